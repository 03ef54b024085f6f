-- name: planted_recovery_by_effects
-- Each language's heads with the largest ablation effects (head_effects: its validation loss with the head gated off minus with every head), as many as its family's planted set holds, against that planted set (a run with `planted:` and head_effects): heads, planted, in both, in either, and their Jaccard; per seed, and their mean (seed = 'mean'). Both sets have the planted set's size; langspec report sets the Jaccard against random sets of that size (controls.json).
-- needs: planted, head_effects
WITH planted AS (
    SELECT seed, language, family, layer, head, kept FROM planted_heads
    WHERE task_key IN (SELECT task_key FROM point_tasks($run_id, $point))
),
effects AS (
    SELECT seed, language, layer, head, loss_without - loss_all AS effect FROM head_effects
    WHERE task_key IN (SELECT task_key FROM point_tasks($run_id, $point))
),
ranked AS (  -- equal effects go to the earlier head, so the top set is one set
    SELECT seed, language, p.family, p.kept AS in_planted,
           row_number() OVER (PARTITION BY seed, language ORDER BY e.effect DESC, layer, head) AS rank,
           count(*) FILTER (WHERE p.kept) OVER (PARTITION BY seed, language) AS planted
    FROM effects AS e JOIN planted AS p USING (seed, language, layer, head)
),
per_seed AS (
    SELECT seed, language, any_value(family) AS family, count(*) AS heads, any_value(planted) AS planted,
           count(*) FILTER (WHERE rank <= planted) AS top,
           count(*) FILTER (WHERE in_planted AND rank <= planted) AS both_sets,
           count(*) FILTER (WHERE in_planted OR rank <= planted) AS either_set
    FROM ranked
    GROUP BY seed, language
)
SELECT language, any_value(family) AS family, seed_label(seed) AS seed,
       avg(heads) AS heads, avg(planted) AS planted, avg(top) AS top, avg(both_sets) AS both_sets, avg(either_set) AS either_set,
       avg(both_sets / either_set) AS jaccard, stddev_samp(both_sets / either_set) AS jaccard_sd, count(*) AS seeds
FROM per_seed
GROUP BY language, ROLLUP(per_seed.seed)
ORDER BY language, per_seed.seed NULLS LAST;
