-- name: gradient_norms
-- Each training language's TracIn gradient norms per variant and checkpoint (epoch) (mean, and relative: over the mean of all languages' means) beside the share of every test language's top-k proponents it supplies at that checkpoint (drawn) and that share by chance: is a language's lean in TracIn the size of its gradients? Per seed, and their mean (seed = 'mean').
-- needs: tracin
WITH per_seed AS ( -- each example's language from the data task its TracIn task read
    SELECT g.seed, g.variant, g.checkpoint, e.language, avg(g.norm) AS mean_norm, count(*) AS examples
    FROM gradient_norms AS g
    JOIN task_params AS t USING (task_key)
    JOIN examples AS e ON e.task_key = t.inputs ->> 'data' AND e.example_id = g.example_id
    WHERE g.role = 'train' AND g.task_key IN (SELECT task_key FROM point_tasks($run_id, $point))
    GROUP BY ALL
),
drawn AS (
    SELECT seed, variant, checkpoint, train_language AS language, avg(share) AS drawn, avg(chance) AS chance
    FROM point_shares($run_id, $point, $k, true)
    WHERE side = 'proponents'
    GROUP BY ALL
),
joined AS (
    SELECT n.*, n.mean_norm / avg(n.mean_norm) OVER (PARTITION BY n.seed, n.variant, n.checkpoint) AS relative_norm,
           d.drawn, d.chance
    FROM per_seed AS n LEFT JOIN drawn AS d USING (seed, variant, checkpoint, language)
)
SELECT variant, checkpoint AS epoch, language, seed_label(seed) AS seed,
       avg(mean_norm) AS mean_norm, avg(relative_norm) AS relative_norm, avg(drawn) AS drawn, avg(chance) AS chance,
       any_value(examples) AS examples, count(*) AS seeds
FROM joined
GROUP BY variant, checkpoint, language, ROLLUP(joined.seed)
ORDER BY variant_position(variant), checkpoint, language, joined.seed NULLS LAST;
