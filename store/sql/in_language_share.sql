-- name: in_language_share
-- S+(t), S-(t): share of each test language's top-k proponents (opponents) from its own language, per variant, next to chance; per seed, and their mean and sd (seed = 'mean').
-- needs: tracin
WITH per_seed AS (
    SELECT variant, test_language AS language, seed,
           avg(share) FILTER (WHERE side = 'proponents') AS s_plus,
           avg(share) FILTER (WHERE side = 'opponents') AS s_minus,
           avg(chance) AS chance
    FROM point_shares($run_id, $point, $k, false)
    WHERE train_language = test_language
    GROUP BY variant, test_language, seed
)
SELECT variant, language, seed_label(seed) AS seed,
       avg(s_plus) AS s_plus, stddev_samp(s_plus) AS s_plus_sd,
       avg(s_minus) AS s_minus, stddev_samp(s_minus) AS s_minus_sd,
       avg(chance) AS chance, count(*) AS seeds
FROM per_seed
GROUP BY variant, language, ROLLUP(per_seed.seed)
ORDER BY variant_position(variant), language, per_seed.seed NULLS LAST;
