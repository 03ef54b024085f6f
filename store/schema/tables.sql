-- The langspec store's tables, schema version 6 (store/db.py migrates older stores; views.sql and macros.sql
-- build on these). Every table a stage fills carries the key of the task that wrote the rows (task_key;
-- the TracIn score tables its number, `influence_tasks`), so ingesting a task again replaces exactly its rows.

-- Facts about the store itself: schema_version, langspec_version and duckdb_version (of the langspec that
-- created it), and compact while a rewrite after a migration is pending.
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
    outcome VARCHAR, -- cached | ran | failed | skipped; queued while its run goes (not run, if the run ended first)
    reason VARCHAR, started_at TIMESTAMP, finished_at TIMESTAMP, seconds DOUBLE,
    device VARCHAR,
    error VARCHAR, -- the traceback of a failed task
    summary JSON
);

-- The tasks of each sweep point of a run. point names the swept values as task names do
-- ("prune.threshold=0.9,finetune.epochs=3"); a run without a sweep has the one point ''. A task
-- shared by points (e.g. the fine-tuning under a sweep of prune settings) is listed under each.
CREATE TABLE IF NOT EXISTS points (run_id INTEGER, point VARCHAR, task_key VARCHAR);

-- Tasks whose results are in the tables below (a cached task already here is not ingested again).
CREATE TABLE IF NOT EXISTS results (task_key VARCHAR PRIMARY KEY, stage VARCHAR, name VARCHAR, ingested_at TIMESTAMP);

-- The data stage: every example of every language and split (example_id is unique within a data task).
CREATE TABLE IF NOT EXISTS examples (
    task_key VARCHAR, example_id VARCHAR, language VARCHAR,
    split VARCHAR, -- train | validation | test
    label INTEGER, -- 0, 1, ...: the checkpoints' id2label names them (toy and XNLI: entailment, neutral, contradiction)
    text_a VARCHAR, text_b VARCHAR
);

-- Evaluation of each fine-tuned model after each epoch, per language and split.
CREATE TABLE IF NOT EXISTS metrics (
    task_key VARCHAR, seed INTEGER,
    variant VARCHAR, -- full; subnetwork: the full model, a language under its own mask; sft: the SFT model, a language under its own mask; without, only: an ablation's model (the ablated language in its task's params); only_subnetwork: a monolingual model under its language's mask; planted: a planted model under its language's planted set
    language VARCHAR, split VARCHAR,
    metric VARCHAR, -- accuracy; for the full model also predicted_label_<i>, how many examples it predicted as label i
    value DOUBLE, epoch INTEGER
);

-- The checkpoint saved after each epoch of a fine-tuning task, with the learning rate TracIn weighs it by.
CREATE TABLE IF NOT EXISTS checkpoints (
    task_key VARCHAR, seed INTEGER,
    variant VARCHAR, -- full | sft | without | only
    epoch INTEGER, step BIGINT,
    learning_rate DOUBLE, -- the mean learning rate of that epoch's steps: TracIn's weight
    path VARCHAR -- a save_pretrained directory (model and tokenizer), relative to the store's root
);

-- The prune stage: each language's final head mask with the importance it was chosen by, and the
-- whole trajectory (step 0 is the full model; the last step, not accepted, is the one that fell
-- below the threshold, unless pruning ran out of heads).
CREATE TABLE IF NOT EXISTS subnetworks (
    task_key VARCHAR, seed INTEGER, language VARCHAR, layer INTEGER, head INTEGER,
    kept BOOLEAN,
    importance DOUBLE -- the normalised head importance the final mask was chosen by
);

-- Each pruning step of each language: heads kept, the metric and its ratio to the full model's, and
-- whether the step was accepted (its ratio stayed at or above prune.threshold).
CREATE TABLE IF NOT EXISTS prune_steps (
    task_key VARCHAR, seed INTEGER, language VARCHAR,
    step INTEGER, -- 0: the full model
    heads_kept INTEGER,
    metric_value DOUBLE, -- accuracy on prune.split
    ratio_to_full DOUBLE, accepted BOOLEAN
);

-- Fine-tuning with planted modules (the `planted` section): each language's planted head set, the
-- heads its examples ran and updated through (family: the language family whose set it is).
CREATE TABLE IF NOT EXISTS planted_heads (
    task_key VARCHAR, seed INTEGER, language VARCHAR, family VARCHAR, layer INTEGER, head INTEGER, kept BOOLEAN
);

-- The mask_transfer stage: language's test set evaluated under mask_language's subnetwork mask, on the
-- seed's fine-tuned model at its last epoch (language = mask_language: the language's own subnetwork).
CREATE TABLE IF NOT EXISTS mask_transfer (
    task_key VARCHAR, seed INTEGER, language VARCHAR, mask_language VARCHAR, split VARCHAR, epoch INTEGER,
    heads_kept INTEGER, examples INTEGER, correct INTEGER, accuracy DOUBLE
);

-- The head_effects stage: each attention head's ablation effect on each language, on the seed's fine-tuned
-- model at its last epoch; loss_without - loss_all is how much the language's loss rises without the head.
CREATE TABLE IF NOT EXISTS head_effects (
    task_key VARCHAR, seed INTEGER, language VARCHAR,
    split VARCHAR, -- validation
    examples INTEGER, -- the language's examples of the split that the losses average over (head_effects.max_examples)
    layer INTEGER, head INTEGER,
    loss_all DOUBLE, -- mean cross-entropy with every head on (the same on every row of the language)
    loss_without DOUBLE -- mean cross-entropy with this head alone gated off
);

-- Filled by the TracIn stage (store/influence.py ingests it). Scores refer to examples by number:
-- each TracIn task's test examples, then its training examples, each in text order of their ids,
-- numbered after the tasks ingested before it. One number names an example of one task, and
-- `ORDER BY score DESC, train_no` ranks as `ORDER BY score DESC, train_id` would.
CREATE TABLE IF NOT EXISTS influence_examples (
    task_key VARCHAR, role VARCHAR, -- test | train
    example_no INTEGER, example_id VARCHAR
);

-- Each example's gradient norm at each checkpoint of a TracIn task, of the gradient its scores multiplied
-- (masked as the variant masks it; projected with tracin.projection_dim); `tracin.normalize: cosine` divides by it.
CREATE TABLE IF NOT EXISTS gradient_norms (
    task_key VARCHAR, seed INTEGER, variant VARCHAR, checkpoint INTEGER, role VARCHAR, -- test | train
    example_id VARCHAR, norm DOUBLE
);

-- Each TracIn task whose scores are in the store, by number: the score tables below name their task
-- by task_no alone, four bytes a row where the key, seed and variant took dozens (schema version 5).
-- The views `influence`, `tracin_cp` and `proponents` (views.sql) give the rows with task_key, seed, variant.
CREATE TABLE IF NOT EXISTS influence_tasks (task_no INTEGER, task_key VARCHAR, seed INTEGER, variant VARCHAR);

-- One checkpoint's term: lr_c * <grad L(w_c, z_train), grad L(w_c, z_test)>.
CREATE TABLE IF NOT EXISTS influence_numbered (
    task_no INTEGER, checkpoint INTEGER, test_no INTEGER, train_no INTEGER, score REAL
);

-- TracInCP: the sum of the terms over the checkpoints, summed once (by the TracIn task).
CREATE TABLE IF NOT EXISTS tracin_cp_numbered (task_no INTEGER, test_no INTEGER, train_no INTEGER, score REAL);

-- Each test example's highest-scoring (side = 'proponents') and lowest-scoring ('opponents')
-- training examples, rank 1 .. proponents_max_k(), ranked by TracInCP (checkpoint NULL, from the
-- float64 sum) and by each checkpoint's term; ties go to the earlier train_id.
CREATE TABLE IF NOT EXISTS proponents_numbered (
    task_no INTEGER, checkpoint INTEGER, test_no INTEGER, side VARCHAR, rank INTEGER, train_no INTEGER
);

-- Filled by the ablation stage (added in schema version 4; tables.sql creates it in an older store).
-- Each test example scored by a model fine-tuned without language `ablated` (mode 'without') or on
-- it alone (mode 'only'), and by the seed's fully fine-tuned model (full_loss, full_correct).
CREATE TABLE IF NOT EXISTS ablation_examples (
    task_key VARCHAR, seed INTEGER, mode VARCHAR, ablated VARCHAR, example_id VARCHAR, language VARCHAR,
    split VARCHAR, loss DOUBLE, correct BOOLEAN, full_loss DOUBLE, full_correct BOOLEAN
);
