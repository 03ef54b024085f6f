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

-- Filled by the later stages (prune, TracIn); present from version 1 so the schema is stable.
CREATE TABLE IF NOT EXISTS subnetworks (
    task_key VARCHAR, seed INTEGER, language VARCHAR, layer INTEGER, head INTEGER,
    kept BOOLEAN, importance DOUBLE
);

CREATE TABLE IF NOT EXISTS prune_steps (
    task_key VARCHAR, seed INTEGER, language VARCHAR, step INTEGER, heads_kept INTEGER,
    metric_value DOUBLE, ratio_to_full DOUBLE
);

CREATE TABLE IF NOT EXISTS influence (
    task_key VARCHAR, seed INTEGER, variant VARCHAR, checkpoint INTEGER, test_id VARCHAR,
    train_id VARCHAR, score REAL
);
