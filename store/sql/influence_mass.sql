-- name: influence_mass
-- Share of each test language's total positive (and negative) TracInCP mass that comes from each training language, per variant; per seed, and their mean and sd (seed = 'mean').
-- needs: tracin
WITH examples AS MATERIALIZED (
    SELECT task_key, role, example_no, language FROM influence_example_languages
    WHERE task_key IN (SELECT task_key FROM point_tasks($run_id, $point))
),
test_examples AS (SELECT example_no, language FROM examples WHERE role = 'test'),
by_train_example AS ( -- each test language's mass per training example first: integer keys alone over every pair
    SELECT te.language AS test_language, c.train_no,
           coalesce(sum(c.score) FILTER (WHERE c.score > 0), 0) AS positive,
           coalesce(-sum(c.score) FILTER (WHERE c.score < 0), 0) AS negative
    FROM tracin_cp AS c
    JOIN test_examples AS te ON te.example_no = c.test_no
    GROUP BY te.language, c.train_no
),
tasks AS (SELECT DISTINCT task_key, seed, variant FROM proponents WHERE rank = 1 AND task_key IN (SELECT task_key FROM examples)),
mass AS (
    SELECT tr.task_key, t.seed, t.variant, b.test_language, tr.language AS train_language,
           sum(b.positive) AS positive, sum(b.negative) AS negative
    FROM by_train_example AS b
    JOIN (SELECT * FROM examples WHERE role = 'train') AS tr ON tr.example_no = b.train_no
    JOIN tasks AS t USING (task_key)
    GROUP BY tr.task_key, t.seed, t.variant, b.test_language, tr.language
),
shares AS (
    SELECT *,
           positive / nullif(sum(positive) OVER (PARTITION BY task_key, test_language), 0) AS positive_share,
           negative / nullif(sum(negative) OVER (PARTITION BY task_key, test_language), 0) AS negative_share
    FROM mass
)
SELECT variant, test_language, train_language, seed_label(seed) AS seed,
       avg(positive_share) AS positive_share, stddev_samp(positive_share) AS positive_share_sd,
       avg(negative_share) AS negative_share, stddev_samp(negative_share) AS negative_share_sd,
       count(*) AS seeds
FROM shares
GROUP BY variant, test_language, train_language, ROLLUP(shares.seed)
ORDER BY variant_position(variant), test_language, train_language, shares.seed NULLS LAST;
