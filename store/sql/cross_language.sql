-- name: cross_language
-- M+[t, s] and M-[t, s]: share of test language t's top-k proponents (opponents) that come from training language s, per variant; per seed, and their mean and sd (seed = 'mean').
-- needs: tracin
SELECT variant, side, test_language, train_language, seed_label(seed) AS seed,
       avg(share) AS share, stddev_samp(share) AS share_sd, avg(chance) AS chance, count(*) AS seeds
FROM point_shares($run_id, $point, $k, false) AS shares
GROUP BY variant, side, test_language, train_language, ROLLUP(shares.seed)
ORDER BY variant_position(variant), side DESC, test_language, train_language,
         shares.seed NULLS LAST;
