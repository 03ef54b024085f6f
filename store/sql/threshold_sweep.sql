-- name: threshold_sweep
-- Across a run's sweep points: each point's prune threshold, the subnetworks' heads kept and sparsity, their test retention (subnetwork / full) and S+ per variant (k <= 100); per seed, and their mean and sd (seed = 'mean').
-- needs: prune
WITH point_keys AS (SELECT point, task_key FROM points WHERE run_id = $run_id),
masks AS (
    SELECT p.point, m.seed, m.language, any_value(m.threshold) AS threshold,
           count(*) FILTER (WHERE m.kept) AS heads_kept, count(*) AS heads
    FROM point_keys AS p JOIN subnetwork_masks AS m USING (task_key)
    GROUP BY ALL
),
accuracy AS (
    SELECT p.point, f.seed, f.language,
           avg(f.value) FILTER (WHERE f.variant = 'subnetwork') / avg(f.value) FILTER (WHERE f.variant = 'full') AS retention
    FROM point_keys AS p JOIN final_metrics AS f USING (task_key)
    WHERE f.metric = 'accuracy' AND f.split = 'test'
    GROUP BY ALL
),
per_test AS ( -- each test example's share of its top-k proponents (by TracInCP) from its own language
    SELECT p.point, r.seed, r.variant, r.task_key, r.test_no, avg(CAST(tr.language = te.language AS DOUBLE)) AS s_plus
    FROM point_keys AS p
    JOIN proponents AS r USING (task_key)
    JOIN influence_example_languages AS te ON te.example_no = r.test_no AND te.role = 'test'
    JOIN influence_example_languages AS tr ON tr.example_no = r.train_no AND tr.role = 'train'
    WHERE r.side = 'proponents' AND r.checkpoint IS NULL AND r.rank <= $k
    GROUP BY ALL
),
shares AS (
    SELECT point, seed,
           avg(s_plus) FILTER (WHERE variant = 'full') AS s_plus_full,
           avg(s_plus) FILTER (WHERE variant = 'subnetwork') AS s_plus_subnetwork,
           avg(s_plus) FILTER (WHERE variant = 'sft') AS s_plus_sft
    FROM per_test GROUP BY ALL
),
per_seed AS (
    SELECT m.point, m.seed, any_value(m.threshold) AS threshold, avg(m.heads_kept) AS heads_kept,
           avg(1 - m.heads_kept / m.heads) AS sparsity, avg(a.retention) AS retention,
           any_value(s.s_plus_full) AS s_plus_full, any_value(s.s_plus_subnetwork) AS s_plus_subnetwork,
           any_value(s.s_plus_sft) AS s_plus_sft
    FROM masks AS m
    LEFT JOIN accuracy AS a USING (point, seed, language)
    LEFT JOIN shares AS s USING (point, seed)
    GROUP BY m.point, m.seed
)
SELECT point, seed_label(seed) AS seed, any_value(threshold) AS threshold,
       avg(heads_kept) AS heads_kept, avg(sparsity) AS sparsity, stddev_samp(sparsity) AS sparsity_sd,
       avg(retention) AS retention, stddev_samp(retention) AS retention_sd,
       avg(s_plus_full) AS s_plus_full, stddev_samp(s_plus_full) AS s_plus_full_sd,
       avg(s_plus_subnetwork) AS s_plus_subnetwork, stddev_samp(s_plus_subnetwork) AS s_plus_subnetwork_sd,
       avg(s_plus_sft) AS s_plus_sft, stddev_samp(s_plus_sft) AS s_plus_sft_sd,
       count(*) AS seeds
FROM per_seed
GROUP BY point, ROLLUP(per_seed.seed)
ORDER BY threshold, point, per_seed.seed NULLS LAST;
