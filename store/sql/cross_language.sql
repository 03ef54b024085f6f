-- name: cross_language
-- M+[t, s] and M-[t, s]: share of test language t's top-k proponents (opponents) that come from training language s, per variant, mean and sd over seeds.
SELECT variant, side, test_language, train_language,
       avg(share) AS share, stddev_samp(share) AS share_sd, avg(chance) AS chance, count(DISTINCT seed) AS seeds
FROM language_shares($run_id, $k, false)
GROUP BY variant, side, test_language, train_language
ORDER BY list_position(['full', 'subnetwork', 'sft'], variant), side DESC, test_language, train_language;
