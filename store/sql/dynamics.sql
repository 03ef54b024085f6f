-- name: dynamics
-- S+(t) from each checkpoint's TracIn term alone: how in-language reliance evolves over the epochs, per variant; per seed, and their mean and sd (seed = 'mean').
-- needs: tracin
SELECT variant, checkpoint AS epoch, test_language AS language, seed_label(seed) AS seed,
       avg(share) AS s_plus, stddev_samp(share) AS s_plus_sd, avg(chance) AS chance, count(*) AS seeds
FROM point_shares($run_id, $point, $k, true) AS shares
WHERE side = 'proponents' AND train_language = test_language
GROUP BY variant, checkpoint, test_language, ROLLUP(shares.seed)
ORDER BY variant_position(variant), language, epoch, shares.seed NULLS LAST;
