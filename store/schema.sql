-- The langspec store, schema version 1. Every table a stage fills carries the key of the task
-- that wrote the rows (task_key), so ingesting a task again replaces exactly its rows.

CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);

-- One row per `langspec run`.
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY, spec_name VARCHAR, spec_path VARCHAR, spec_text VARCHAR,
    overrides VARCHAR[], spec_hash VARCHAR, git_commit VARCHAR, versions JSON, host VARCHAR,
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
