-- store/schema/{tables,views,macros}.sql as schema version 4 shipped them (git 22396ed), verbatim, for the migration tests.
-- The langspec store's tables, schema version 4 (store/db.py migrates older stores; views.sql and macros.sql
-- build on these). Every table a stage fills carries the key of the task
-- that wrote the rows (task_key), so ingesting a task again replaces exactly its rows.

CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);

-- One row per `langspec run`.
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY, spec_name VARCHAR, spec_path VARCHAR, spec_text VARCHAR,
    overrides VARCHAR[], spec JSON, -- the validated spec with the overrides applied, every default filled in
    spec_hash VARCHAR, git_commit VARCHAR, versions JSON, host VARCHAR,
    pid INTEGER, executor VARCHAR, started_at TIMESTAMP, finished_at TIMESTAMP,
    status VARCHAR -- running | completed | failed | interrupted
);

-- One row per task per run: what happened to it in that run.
CREATE TABLE IF NOT EXISTS tasks (
    run_id INTEGER, task_key VARCHAR, name VARCHAR, stage VARCHAR, params JSON,
    inputs JSON, -- {role: upstream task_key}, e.g. {"data": ..., "finetune": ...}
    outcome VARCHAR, -- cached | ran | failed | skipped
    reason VARCHAR, started_at TIMESTAMP, finished_at TIMESTAMP, seconds DOUBLE,
    device VARCHAR, error VARCHAR, summary JSON
);

-- The tasks of each sweep point of a run. point names the swept values as task names do
-- ("prune.threshold=0.9,finetune.epochs=3"); a run without a sweep has the one point ''. A task
-- shared by points (e.g. the fine-tuning under a sweep of prune settings) is listed under each.
CREATE TABLE IF NOT EXISTS points (run_id INTEGER, point VARCHAR, task_key VARCHAR);

-- Tasks whose results are in the tables below (a cached task already here is not ingested again).
CREATE TABLE IF NOT EXISTS results (task_key VARCHAR PRIMARY KEY, stage VARCHAR, name VARCHAR, ingested_at TIMESTAMP);

CREATE TABLE IF NOT EXISTS examples (
    task_key VARCHAR, example_id VARCHAR, language VARCHAR, split VARCHAR, label INTEGER,
    text_a VARCHAR, text_b VARCHAR
);

CREATE TABLE IF NOT EXISTS metrics (
    task_key VARCHAR, seed INTEGER, variant VARCHAR, language VARCHAR, split VARCHAR,
    metric VARCHAR, value DOUBLE, epoch INTEGER
);

CREATE TABLE IF NOT EXISTS checkpoints (
    task_key VARCHAR, seed INTEGER, variant VARCHAR, epoch INTEGER, step BIGINT,
    learning_rate DOUBLE, path VARCHAR -- relative to the store's root
);

-- The prune stage: each language's final head mask with the importance it was chosen by, and the
-- whole trajectory (step 0 is the full model; the last step, not accepted, is the one that fell
-- below the threshold, unless pruning ran out of heads).
CREATE TABLE IF NOT EXISTS subnetworks (
    task_key VARCHAR, seed INTEGER, language VARCHAR, layer INTEGER, head INTEGER,
    kept BOOLEAN, importance DOUBLE
);

CREATE TABLE IF NOT EXISTS prune_steps (
    task_key VARCHAR, seed INTEGER, language VARCHAR, step INTEGER, heads_kept INTEGER,
    metric_value DOUBLE, ratio_to_full DOUBLE, accepted BOOLEAN
);

-- The mask_transfer stage: language's test set evaluated under mask_language's subnetwork mask, on the
-- seed's fine-tuned model at its last epoch (language = mask_language: the language's own subnetwork).
CREATE TABLE IF NOT EXISTS mask_transfer (
    task_key VARCHAR, seed INTEGER, language VARCHAR, mask_language VARCHAR, split VARCHAR, epoch INTEGER,
    heads_kept INTEGER, examples INTEGER, correct INTEGER, accuracy DOUBLE
);

-- Filled by the TracIn stage (store/influence.py ingests it). Scores refer to examples by number:
-- each TracIn task's test examples, then its training examples, each in text order of their ids,
-- numbered after the tasks ingested before it. One number names an example of one task, and
-- `ORDER BY score DESC, train_no` ranks as `ORDER BY score DESC, train_id` would.
CREATE TABLE IF NOT EXISTS influence_examples (
    task_key VARCHAR, role VARCHAR, -- test | train
    example_no INTEGER, example_id VARCHAR
);

-- One checkpoint's term: lr_c * <grad L(w_c, z_train), grad L(w_c, z_test)>.
CREATE TABLE IF NOT EXISTS influence (
    task_key VARCHAR, seed INTEGER, variant VARCHAR, checkpoint INTEGER, test_no INTEGER,
    train_no INTEGER, score REAL
);

-- TracInCP: the sum of the terms over the checkpoints, summed once at ingest.
CREATE TABLE IF NOT EXISTS tracin_cp (
    task_key VARCHAR, seed INTEGER, variant VARCHAR, test_no INTEGER, train_no INTEGER, score REAL
);

-- Each test example's highest-scoring (side = 'proponents') and lowest-scoring ('opponents')
-- training examples, rank 1 .. proponents_max_k(), ranked at ingest by TracInCP (checkpoint NULL,
-- from the float64 sum) and by each checkpoint's term; ties go to the earlier train_id.
CREATE TABLE IF NOT EXISTS proponents (
    task_key VARCHAR, seed INTEGER, variant VARCHAR, checkpoint INTEGER, test_no INTEGER, side VARCHAR,
    rank INTEGER, train_no INTEGER
);

-- Filled by the ablation stage (added in schema 3 without a version change: CREATE IF NOT EXISTS).
-- Each test example scored by a model fine-tuned without language `ablated` (mode 'without') or on
-- it alone (mode 'only'), and by the seed's fully fine-tuned model (full_loss, full_correct).
CREATE TABLE IF NOT EXISTS ablation_examples (
    task_key VARCHAR, seed INTEGER, mode VARCHAR, ablated VARCHAR, example_id VARCHAR, language VARCHAR,
    split VARCHAR, loss DOUBLE, correct BOOLEAN, full_loss DOUBLE, full_correct BOOLEAN
);
-- The langspec store's views, built on tables.sql; store/db.py replaces them on every run.

-- Each prune task's mask with what it was pruned from: the fine-tuning task (finetune_key) and the
-- prune settings (config, JSON), so that the masks of one study compare across languages. model is
-- 'multilingual' (pruned on the seed's full fine-tuning) or 'only' (pruned on the model fine-tuned on
-- that language alone, an ablation task in mode 'only'); an 'only' mask's finetune_key is the seed's
-- full fine-tuning all the same (the one its ablation task measured against), so the monolingual
-- masks of one study pair up as the multilingual ones do.
CREATE OR REPLACE VIEW subnetwork_masks AS
SELECT s.task_key, s.seed, s.language, coalesce(t.inputs ->> 'finetune', a.inputs ->> 'finetune') AS finetune_key,
       CASE WHEN t.inputs ->> 'ablation' IS NULL THEN 'multilingual' ELSE 'only' END AS model,
       CAST(t.params -> 'prune' AS VARCHAR) AS config,
       CAST((t.params -> 'prune') ->> 'threshold' AS DOUBLE) AS threshold,
       CAST((t.params -> 'prune') ->> 'step' AS DOUBLE) AS step,
       s.layer, s.head, s.kept, s.importance
FROM subnetworks AS s
JOIN (SELECT DISTINCT ON (task_key) task_key, params, inputs FROM tasks) AS t USING (task_key)
LEFT JOIN (SELECT DISTINCT ON (task_key) task_key, inputs FROM tasks) AS a ON a.task_key = t.inputs ->> 'ablation';

-- Every ordered pair of languages' masks within one study (same fine-tuning, same prune settings, both
-- multilingual or both monolingual): heads kept by both, by either and by the first, and their Jaccard similarity.
CREATE OR REPLACE VIEW subnetwork_pairs AS
SELECT a.task_key, a.seed, a.finetune_key, a.model, a.config, a.threshold, a.step,
       a.language AS language_a, b.language AS language_b,
       count(*) FILTER (WHERE a.kept AND b.kept) AS both_kept,
       count(*) FILTER (WHERE a.kept OR b.kept) AS either_kept,
       coalesce(both_kept / nullif(either_kept, 0), 1.0) AS jaccard, -- two empty masks are equal
       count(*) FILTER (WHERE a.kept) AS heads_kept_a,
       count(*) AS heads
FROM subnetwork_masks AS a
JOIN subnetwork_masks AS b
  ON a.finetune_key = b.finetune_key AND a.model = b.model AND a.config = b.config AND a.layer = b.layer AND a.head = b.head
GROUP BY a.task_key, a.seed, a.finetune_key, a.model, a.config, a.threshold, a.step, a.language, b.language;

-- Each task once, with its params and inputs (the same for every run it appears in).
CREATE OR REPLACE VIEW task_params AS
SELECT DISTINCT ON (task_key) task_key, name, stage, params, inputs FROM tasks ORDER BY task_key, run_id DESC;

-- The metrics of each task's last epoch (per variant): what "the model's accuracy" means.
CREATE OR REPLACE VIEW final_metrics AS
SELECT * EXCLUDE (last_epoch)
FROM (SELECT *, max(epoch) OVER (PARTITION BY task_key, variant) AS last_epoch FROM metrics)
WHERE epoch IS NOT DISTINCT FROM last_epoch;

-- Each TracIn task's numbered examples with their language (from the data task the TracIn task read;
-- NULL while no run has recorded the task, as after `langspec verify --repair`).
CREATE OR REPLACE VIEW influence_example_languages AS
SELECT x.task_key, x.role, x.example_no, x.example_id, e.language
FROM influence_examples AS x
LEFT JOIN task_params AS t USING (task_key)
LEFT JOIN examples AS e ON e.task_key = t.inputs ->> 'data' AND e.example_id = x.example_id;

-- Influence rows with the ids and languages of both examples, one per checkpoint term.
CREATE OR REPLACE VIEW influence_by_language AS
SELECT i.task_key, i.seed, i.variant, i.checkpoint, te.example_id AS test_id, te.language AS test_language,
       tr.example_id AS train_id, tr.language AS train_language, i.score
FROM influence AS i
JOIN influence_example_languages AS te ON te.example_no = i.test_no
JOIN influence_example_languages AS tr ON tr.example_no = i.train_no;

-- TracInCP with the ids and languages of both examples.
CREATE OR REPLACE VIEW tracin_cp_by_language AS
SELECT c.task_key, c.seed, c.variant, te.example_id AS test_id, te.language AS test_language,
       tr.example_id AS train_id, tr.language AS train_language, c.score
FROM tracin_cp AS c
JOIN influence_example_languages AS te ON te.example_no = c.test_no
JOIN influence_example_languages AS tr ON tr.example_no = c.train_no;

-- The measured effect of the ablation (mode 'without': E[t, s]): per ablation task and test language t,
-- the mean test loss and accuracy of the model trained without s (or on s alone) minus those of the
-- model trained on every language.
CREATE OR REPLACE VIEW ablation_effects AS
SELECT task_key, seed, mode, ablated, language, split,
       avg(loss) AS loss, avg(full_loss) AS full_loss, avg(loss - full_loss) AS loss_effect,
       avg(CAST(correct AS DOUBLE)) AS accuracy, avg(CAST(full_correct AS DOUBLE)) AS full_accuracy,
       avg(CAST(correct AS DOUBLE) - CAST(full_correct AS DOUBLE)) AS accuracy_effect,
       count(*) AS examples
FROM ablation_examples
GROUP BY task_key, seed, mode, ablated, language, split;
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

CREATE OR REPLACE MACRO run_final_metrics(run) AS TABLE
SELECT * FROM final_metrics WHERE task_key IN (SELECT task_key FROM run_tasks(run));

CREATE OR REPLACE MACRO run_subnetwork_masks(run) AS TABLE
SELECT * FROM subnetwork_masks WHERE task_key IN (SELECT task_key FROM run_tasks(run));

CREATE OR REPLACE MACRO run_subnetwork_pairs(run) AS TABLE
SELECT * FROM subnetwork_pairs WHERE task_key IN (SELECT task_key FROM run_tasks(run));

CREATE OR REPLACE MACRO run_scores(run) AS TABLE
SELECT * FROM influence_by_language WHERE task_key IN (SELECT task_key FROM run_tasks(run));

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
