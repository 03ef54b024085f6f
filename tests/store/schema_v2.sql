-- The langspec store, schema version 2 (store/db.py migrates older stores). Every table a stage fills carries the key of the task
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

-- Filled by the TracIn stage; present from version 1 so the schema is stable.

CREATE TABLE IF NOT EXISTS influence (
    task_key VARCHAR, seed INTEGER, variant VARCHAR, checkpoint INTEGER, test_id VARCHAR,
    train_id VARCHAR, score REAL
);

-- Each prune task's mask with what it was pruned from: the fine-tuning task (finetune_key) and the
-- prune settings (config, JSON), so that the masks of one study compare across languages.
CREATE OR REPLACE VIEW subnetwork_masks AS
SELECT s.task_key, s.seed, s.language, t.inputs ->> 'finetune' AS finetune_key,
       CAST(t.params -> 'prune' AS VARCHAR) AS config,
       CAST(t.params -> 'prune' ->> 'threshold' AS DOUBLE) AS threshold,
       CAST(t.params -> 'prune' ->> 'step' AS DOUBLE) AS step,
       s.layer, s.head, s.kept, s.importance
FROM subnetworks AS s
JOIN (SELECT DISTINCT ON (task_key) task_key, params, inputs FROM tasks) AS t USING (task_key);

-- Every ordered pair of languages' masks within one study (same fine-tuning, same prune settings):
-- heads kept by both, by either and by the first, and their Jaccard similarity.
CREATE OR REPLACE VIEW subnetwork_pairs AS
SELECT a.task_key, a.seed, a.finetune_key, a.config, a.threshold, a.step,
       a.language AS language_a, b.language AS language_b,
       count(*) FILTER (WHERE a.kept AND b.kept) AS both_kept,
       count(*) FILTER (WHERE a.kept OR b.kept) AS either_kept,
       coalesce(both_kept / nullif(either_kept, 0), 1.0) AS jaccard, -- two empty masks are equal
       count(*) FILTER (WHERE a.kept) AS heads_kept_a,
       count(*) AS heads
FROM subnetwork_masks AS a
JOIN subnetwork_masks AS b
  ON a.finetune_key = b.finetune_key AND a.config = b.config AND a.layer = b.layer AND a.head = b.head
GROUP BY a.task_key, a.seed, a.finetune_key, a.config, a.threshold, a.step, a.language, b.language;

-- Each task once, with its params and inputs (the same for every run it appears in).
CREATE OR REPLACE VIEW task_params AS
SELECT DISTINCT ON (task_key) task_key, name, stage, params, inputs FROM tasks ORDER BY task_key, run_id DESC;

-- The metrics of each task's last epoch (per variant): what "the model's accuracy" means.
CREATE OR REPLACE VIEW final_metrics AS
SELECT * EXCLUDE (last_epoch)
FROM (SELECT *, max(epoch) OVER (PARTITION BY task_key, variant) AS last_epoch FROM metrics)
WHERE epoch IS NOT DISTINCT FROM last_epoch;

-- Influence rows with the languages of both examples (from the data task the TracIn task read).
CREATE OR REPLACE VIEW influence_by_language AS
SELECT i.task_key, i.seed, i.variant, i.checkpoint, i.test_id, te.language AS test_language,
       i.train_id, tr.language AS train_language, i.score
FROM influence AS i
JOIN task_params AS t USING (task_key)
JOIN examples AS te ON te.task_key = t.inputs ->> 'data' AND te.example_id = i.test_id
JOIN examples AS tr ON tr.task_key = t.inputs ->> 'data' AND tr.example_id = i.train_id;

-- The keys of the tasks of one sweep point of a run: what every analysis reads.
CREATE OR REPLACE MACRO point_tasks(run, pt) AS TABLE
SELECT task_key FROM points WHERE run_id = run AND point = pt;

-- TracIn scores of one sweep point's tasks: TracInCP (summed over checkpoints; checkpoint NULL), or
-- each checkpoint's term alone when per_checkpoint.
CREATE OR REPLACE MACRO point_influence(run, pt, per_checkpoint) AS TABLE
SELECT task_key, seed, variant, CASE WHEN per_checkpoint THEN checkpoint END AS checkpoint,
       test_id, test_language, train_id, train_language, sum(score) AS score
FROM influence_by_language
WHERE task_key IN (SELECT task_key FROM point_tasks(run, pt))
GROUP BY ALL;

-- The study's shares (DESIGN.md §3.5). For every TracIn task of the run, test language t and
-- training language s: the mean over t's test examples of the share of their top-k proponents
-- (side = 'proponents', highest scores) or opponents ('opponents', lowest scores) that come from
-- s. share is M+[t, s] / M-[t, s]; on the diagonal it is S+(t) / S-(t). chance is s's share of
-- the scored training examples. Every (t, s) pair is present, zero when s supplies none.
CREATE OR REPLACE MACRO point_shares(run, pt, k, per_checkpoint) AS TABLE
WITH scores AS (SELECT * FROM point_influence(run, pt, per_checkpoint)),
ranked AS (
    SELECT *,
           row_number() OVER (PARTITION BY task_key, checkpoint, test_id ORDER BY score DESC, train_id) AS pro,
           row_number() OVER (PARTITION BY task_key, checkpoint, test_id ORDER BY score ASC, train_id) AS con
    FROM scores
),
top AS (
    SELECT task_key, checkpoint, test_id, train_language, 'proponents' AS side FROM ranked WHERE pro <= k
    UNION ALL
    SELECT task_key, checkpoint, test_id, train_language, 'opponents' AS side FROM ranked WHERE con <= k
),
per_test AS (
    SELECT task_key, checkpoint, side, test_id, train_language,
           count(*) / sum(count(*)) OVER (PARTITION BY task_key, checkpoint, side, test_id) AS share
    FROM top GROUP BY task_key, checkpoint, side, test_id, train_language
),
tests AS (SELECT DISTINCT task_key, seed, variant, checkpoint, test_id, test_language FROM scores),
train_languages AS (
    SELECT task_key, train_language, count(*) / sum(count(*)) OVER (PARTITION BY task_key) AS chance
    FROM (SELECT DISTINCT task_key, train_id, train_language FROM scores) GROUP BY task_key, train_language
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
 AND p.test_id = g.test_id AND p.train_language = g.train_language
GROUP BY ALL;
