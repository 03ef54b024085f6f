-- name: influence_mass
-- Share of each test language's total positive (and negative) TracInCP mass that comes from each training language, per variant; per seed, and their mean and sd (seed = 'mean').
WITH mass AS (
    SELECT task_key, seed, variant, test_language, train_language,
           coalesce(sum(score) FILTER (WHERE score > 0), 0) AS positive,
           coalesce(-sum(score) FILTER (WHERE score < 0), 0) AS negative
    FROM point_influence($run_id, $point, false)
    GROUP BY task_key, seed, variant, test_language, train_language
),
shares AS (
    SELECT *,
           positive / nullif(sum(positive) OVER (PARTITION BY task_key, test_language), 0) AS positive_share,
           negative / nullif(sum(negative) OVER (PARTITION BY task_key, test_language), 0) AS negative_share
    FROM mass
)
SELECT variant, test_language, train_language, coalesce(CAST(seed AS VARCHAR), 'mean') AS seed,
       avg(positive_share) AS positive_share, stddev_samp(positive_share) AS positive_share_sd,
       avg(negative_share) AS negative_share, stddev_samp(negative_share) AS negative_share_sd,
       count(*) AS seeds
FROM shares
GROUP BY GROUPING SETS ((variant, test_language, train_language, shares.seed), (variant, test_language, train_language))
ORDER BY list_position(['full', 'subnetwork', 'sft'], variant), test_language, train_language, shares.seed NULLS LAST;
