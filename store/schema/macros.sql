-- The langspec store's macros, built on tables.sql and views.sql; store/db.py replaces them on every run.

-- The TracIn variants in the order the analyses and figures show them: ORDER BY variant_position(variant).
CREATE OR REPLACE MACRO variant_position(v) AS list_position(['full', 'subnetwork', 'sft'], v);

-- The seed roll-up of every analysis: it groups by its keys and ROLLUP(seed), so each key gets one row
-- per seed and one over all seeds (seed NULL); this labels the latter 'mean'.
CREATE OR REPLACE MACRO seed_label(seed) AS coalesce(CAST(seed AS VARCHAR), 'mean');

-- The last completed run: `SELECT * FROM run_metrics(last_run())`.
CREATE OR REPLACE MACRO last_run() AS (SELECT max(run_id) FROM runs WHERE status = 'completed');

-- The keys of the tasks of one run (ran, or cached from an earlier run), every sweep point together.
CREATE OR REPLACE MACRO run_tasks(run) AS TABLE
SELECT DISTINCT task_key FROM tasks WHERE run_id = run AND outcome IN ('ran', 'cached');

-- One run's rows of the tables that many runs share: copy-pasted SQL then answers for that run.
CREATE OR REPLACE MACRO run_metrics(run) AS TABLE
SELECT * FROM metrics WHERE task_key IN (SELECT task_key FROM run_tasks(run));

-- One run's rows of final_metrics.
CREATE OR REPLACE MACRO run_final_metrics(run) AS TABLE
SELECT * FROM final_metrics WHERE task_key IN (SELECT task_key FROM run_tasks(run));

-- One run's rows of subnetwork_masks.
CREATE OR REPLACE MACRO run_subnetwork_masks(run) AS TABLE
SELECT * FROM subnetwork_masks WHERE task_key IN (SELECT task_key FROM run_tasks(run));

-- One run's rows of subnetwork_pairs.
CREATE OR REPLACE MACRO run_subnetwork_pairs(run) AS TABLE
SELECT * FROM subnetwork_pairs WHERE task_key IN (SELECT task_key FROM run_tasks(run));

-- One run's rows of influence_by_language.
CREATE OR REPLACE MACRO run_scores(run) AS TABLE
SELECT * FROM influence_by_language WHERE task_key IN (SELECT task_key FROM run_tasks(run));

-- One run's rows of tracin_cp_by_language.
CREATE OR REPLACE MACRO run_tracin_cp(run) AS TABLE
SELECT * FROM tracin_cp_by_language WHERE task_key IN (SELECT task_key FROM run_tasks(run));

-- The keys of the tasks of one sweep point of a run: what every analysis reads.
CREATE OR REPLACE MACRO point_tasks(run, pt) AS TABLE
SELECT task_key FROM points WHERE run_id = run AND point = pt;

-- TracIn scores of one sweep point's tasks with the examples' ids and languages: TracInCP
-- (checkpoint NULL), or each checkpoint's term alone when per_checkpoint.
CREATE OR REPLACE MACRO point_influence(run, pt, per_checkpoint) AS TABLE
SELECT task_key, seed, variant, checkpoint, test_id, test_language, train_id, train_language, score
FROM influence_by_language
WHERE per_checkpoint AND task_key IN (SELECT task_key FROM point_tasks(run, pt))
UNION ALL
SELECT task_key, seed, variant, NULL AS checkpoint, test_id, test_language, train_id, train_language, score
FROM tracin_cp_by_language
WHERE NOT per_checkpoint AND task_key IN (SELECT task_key FROM point_tasks(run, pt));

-- How many proponents and opponents per test example the `proponents` table holds (ingest ranks
-- this many; a larger k ranks the raw scores instead, slowly). Changing it needs a new schema version.
CREATE OR REPLACE MACRO proponents_max_k() AS 100;

-- The top-k proponents (highest TracIn scores) and opponents (lowest) of every test example of one
-- sweep point's TracIn tasks, by TracInCP (checkpoint NULL) or by each checkpoint's term; ties go
-- to the earlier train_id. From the `proponents` table, or for k > proponents_max_k() ranked from
-- the raw scores.
CREATE OR REPLACE MACRO point_proponents(run, pt, k, per_checkpoint) AS TABLE
WITH tasks AS (SELECT task_key FROM point_tasks(run, pt)),
scores AS (
    SELECT task_key, seed, variant, CASE WHEN per_checkpoint THEN checkpoint END AS checkpoint, test_no, train_no,
           sum(score) AS score
    FROM influence
    WHERE k > proponents_max_k() AND task_key IN (SELECT task_key FROM tasks)
    GROUP BY ALL
)
SELECT task_key, seed, variant, checkpoint, test_no, side, rank, train_no
FROM proponents
WHERE k <= proponents_max_k() AND rank <= k AND (checkpoint IS NOT NULL) = per_checkpoint
  AND task_key IN (SELECT task_key FROM tasks)
UNION ALL
SELECT task_key, seed, variant, checkpoint, test_no, 'proponents' AS side,
       row_number() OVER (PARTITION BY task_key, checkpoint, test_no ORDER BY score DESC, train_no) AS rank, train_no
FROM scores
QUALIFY rank <= k
UNION ALL
SELECT task_key, seed, variant, checkpoint, test_no, 'opponents' AS side,
       row_number() OVER (PARTITION BY task_key, checkpoint, test_no ORDER BY score ASC, train_no) AS rank, train_no
FROM scores
QUALIFY rank <= k;

-- The study's shares (the README's Analyses). For every TracIn task of the point, test language t and
-- training language s: the mean over t's test examples of the share of their top-k proponents
-- (side = 'proponents', highest scores) or opponents ('opponents', lowest scores) that come from
-- s. share is M+[t, s] / M-[t, s]; on the diagonal it is S+(t) / S-(t). chance is s's share of
-- the scored training examples. Every (t, s) pair is present, zero when s supplies none.
CREATE OR REPLACE MACRO point_shares(run, pt, k, per_checkpoint) AS TABLE
WITH examples AS (
    SELECT * FROM influence_example_languages WHERE task_key IN (SELECT task_key FROM point_tasks(run, pt))
),
top AS (
    SELECT p.task_key, p.checkpoint, p.test_no, p.side, x.language AS train_language
    FROM point_proponents(run, pt, k, per_checkpoint) AS p
    JOIN examples AS x ON x.example_no = p.train_no AND x.role = 'train'
),
per_test AS (
    SELECT task_key, checkpoint, side, test_no, train_language,
           count(*) / sum(count(*)) OVER (PARTITION BY task_key, checkpoint, side, test_no) AS share
    FROM top GROUP BY task_key, checkpoint, side, test_no, train_language
),
tests AS ( -- every scored test example, at every checkpoint when per_checkpoint
    SELECT p.task_key, p.seed, p.variant, p.checkpoint, p.test_no, x.language AS test_language
    FROM proponents AS p
    JOIN examples AS x ON x.example_no = p.test_no AND x.role = 'test'
    WHERE p.side = 'proponents' AND p.rank = 1 AND (p.checkpoint IS NOT NULL) = per_checkpoint
),
train_languages AS (
    SELECT task_key, language AS train_language, count(*) / sum(count(*)) OVER (PARTITION BY task_key) AS chance
    FROM examples WHERE role = 'train' GROUP BY task_key, language
),
grid AS (
    SELECT t.*, l.train_language, l.chance, side
    FROM tests AS t JOIN train_languages AS l USING (task_key)
    CROSS JOIN (VALUES ('proponents'), ('opponents')) AS sides(side)
)
SELECT g.task_key, g.seed, g.variant, g.checkpoint, g.side, g.test_language, g.train_language,
       avg(coalesce(p.share, 0)) AS share, any_value(g.chance) AS chance, count(*) AS test_examples
FROM grid AS g
LEFT JOIN per_test AS p
  ON p.task_key = g.task_key AND p.checkpoint IS NOT DISTINCT FROM g.checkpoint AND p.side = g.side
 AND p.test_no = g.test_no AND p.train_language = g.train_language
GROUP BY ALL;

-- Each TracIn test example of one sweep point's TracIn tasks, per training language s: the sum of its
-- TracInCP scores over s's scored training examples (the terms of TracIn's predicted effect P[t, s])
-- and the share of its top-k proponents that come from s (the terms of M+[t, s]). Every (test, s) pair
-- is present. What influence_validity averages, and what its bootstrap resamples.
CREATE OR REPLACE MACRO validity_tests(run, pt, k) AS TABLE
WITH examples AS (
    SELECT * FROM influence_example_languages WHERE task_key IN (SELECT task_key FROM point_tasks(run, pt))
),
summed AS (
    SELECT c.task_key, c.seed, c.variant, c.test_no, te.language AS test_language, tr.language AS train_language,
           sum(c.score) AS score
    FROM tracin_cp AS c
    JOIN examples AS te ON te.example_no = c.test_no AND te.role = 'test'
    JOIN examples AS tr ON tr.example_no = c.train_no AND tr.role = 'train'
    WHERE c.task_key IN (SELECT task_key FROM point_tasks(run, pt))
    GROUP BY ALL
),
top AS (
    SELECT p.task_key, p.test_no, x.language AS train_language,
           count(*) / sum(count(*)) OVER (PARTITION BY p.task_key, p.test_no) AS share
    FROM point_proponents(run, pt, k, false) AS p
    JOIN examples AS x ON x.example_no = p.train_no AND x.role = 'train'
    WHERE p.side = 'proponents'
    GROUP BY p.task_key, p.test_no, x.language
)
SELECT s.task_key, s.seed, s.variant, s.test_no, s.test_language, s.train_language, s.score,
       coalesce(t.share, 0) AS share
FROM summed AS s
LEFT JOIN top AS t USING (task_key, test_no, train_language);
