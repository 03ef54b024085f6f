-- name: planted_recovery
-- Each language's pruned subnetwork against its family's planted head set (a run with `planted:`): heads in the planted set, kept by pruning, in both, in either, and their Jaccard; per seed, and their mean (seed = 'mean'). langspec report sets the Jaccard against random masks of the same sizes (controls.json).
-- needs: planted, prune
WITH planted AS (
    SELECT seed, language, family, layer, head, kept FROM planted_heads
    WHERE task_key IN (SELECT task_key FROM point_tasks($run_id, $point))
),
pruned AS (
    SELECT seed, language, layer, head, kept FROM subnetwork_masks
    WHERE model = 'multilingual' AND task_key IN (SELECT task_key FROM point_tasks($run_id, $point))
),
per_seed AS (
    SELECT seed, language, any_value(family) AS family, count(*) AS heads,
           count(*) FILTER (WHERE p.kept) AS planted, count(*) FILTER (WHERE s.kept) AS kept,
           count(*) FILTER (WHERE p.kept AND s.kept) AS both_sets, count(*) FILTER (WHERE p.kept OR s.kept) AS either_set
    FROM planted AS p JOIN pruned AS s USING (seed, language, layer, head)
    GROUP BY seed, language
)
SELECT language, any_value(family) AS family, seed_label(seed) AS seed,
       avg(heads) AS heads, avg(planted) AS planted, avg(kept) AS kept, avg(both_sets) AS both_sets, avg(either_set) AS either_set,
       avg(both_sets / either_set) AS jaccard, stddev_samp(both_sets / either_set) AS jaccard_sd, count(*) AS seeds
FROM per_seed
GROUP BY language, ROLLUP(per_seed.seed)
ORDER BY language, per_seed.seed NULLS LAST;
