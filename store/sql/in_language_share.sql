-- name: in_language_share
-- S+(t), S-(t): share of each test language's top-k proponents (opponents) from its own language, per variant, mean and sd over seeds, next to chance.
SELECT variant, test_language AS language,
       avg(share) FILTER (WHERE side = 'proponents') AS s_plus,
       stddev_samp(share) FILTER (WHERE side = 'proponents') AS s_plus_sd,
       avg(share) FILTER (WHERE side = 'opponents') AS s_minus,
       stddev_samp(share) FILTER (WHERE side = 'opponents') AS s_minus_sd,
       avg(chance) FILTER (WHERE side = 'proponents') AS chance,
       count(DISTINCT seed) AS seeds
FROM language_shares($run_id, $k, false)
WHERE train_language = test_language
GROUP BY variant, test_language
ORDER BY list_position(['full', 'subnetwork', 'sft'], variant), language;
