-- name: subnetwork_similarity
-- Jaccard of kept heads for every pair of languages (of the multilingual model, or of the monolingual models: model = only), each language's heads kept and sparsity, and the heads no language keeps; per seed, and their mean and sd (seed = 'mean').
-- needs: prune
WITH masks AS (
    SELECT * FROM subnetwork_masks WHERE task_key IN (SELECT task_key FROM point_tasks($run_id, $point))
),
pairs AS (
    SELECT * FROM subnetwork_pairs WHERE task_key IN (SELECT task_key FROM point_tasks($run_id, $point))
),
unused AS (
    SELECT finetune_key, model, config, count(*) AS heads_kept_by_no_language
    FROM (SELECT finetune_key, model, config, layer, head FROM masks GROUP BY ALL HAVING NOT bool_or(kept))
    GROUP BY ALL
),
per_seed AS (
    SELECT pairs.*, coalesce(heads_kept_by_no_language, 0) AS heads_kept_by_no_language
    FROM pairs LEFT JOIN unused USING (finetune_key, model, config)
)
SELECT model, language_a, language_b, seed_label(seed) AS seed,
       avg(jaccard) AS jaccard, stddev_samp(jaccard) AS jaccard_sd,
       avg(heads_kept_a) AS heads_kept_a, avg(1 - heads_kept_a / heads) AS sparsity_a,
       avg(heads_kept_by_no_language) AS heads_kept_by_no_language,
       count(*) AS seeds
FROM per_seed
GROUP BY model, language_a, language_b, ROLLUP(per_seed.seed)
ORDER BY model DESC, language_a, language_b, per_seed.seed NULLS LAST;
