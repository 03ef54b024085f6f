-- name: accuracy
-- Test accuracy per language at the last epoch for full, subnetwork and sft, and retention = subnetwork / full; per seed, and their mean and sd (seed = 'mean').
-- needs: finetune
WITH per_seed AS (
    SELECT seed, language,
           avg(value) FILTER (WHERE variant = 'full') AS "full",
           avg(value) FILTER (WHERE variant = 'subnetwork') AS subnetwork,
           avg(value) FILTER (WHERE variant = 'sft') AS sft
    FROM final_metrics
    WHERE metric = 'accuracy' AND split = 'test'
      AND task_key IN (SELECT task_key FROM point_tasks($run_id, $point))
    GROUP BY seed, language
)
SELECT language, seed_label(seed) AS seed,
       avg("full") AS "full", stddev_samp("full") AS full_sd,
       avg(subnetwork) AS subnetwork, stddev_samp(subnetwork) AS subnetwork_sd,
       avg(sft) AS sft, stddev_samp(sft) AS sft_sd,
       avg(subnetwork / "full") AS retention, stddev_samp(subnetwork / "full") AS retention_sd,
       count(*) AS seeds
FROM per_seed
GROUP BY language, ROLLUP(per_seed.seed)
ORDER BY language, per_seed.seed NULLS LAST;
