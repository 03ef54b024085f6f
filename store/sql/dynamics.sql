-- name: dynamics
-- S+(t) from each checkpoint's TracIn term alone: how in-language reliance evolves over the epochs, per variant; mean and sd over seeds.
SELECT variant, checkpoint AS epoch, test_language AS language,
       avg(share) AS s_plus, stddev_samp(share) AS s_plus_sd, avg(chance) AS chance, count(DISTINCT seed) AS seeds
FROM language_shares($run_id, $k, true)
WHERE side = 'proponents' AND train_language = test_language
GROUP BY variant, checkpoint, test_language
ORDER BY list_position(['full', 'subnetwork', 'sft'], variant), language, epoch;
