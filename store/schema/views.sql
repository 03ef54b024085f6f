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

-- The score tables with the task each row belongs to (its key, seed and variant): what queries read.
CREATE OR REPLACE VIEW influence AS
SELECT t.task_key, t.seed, t.variant, s.checkpoint, s.test_no, s.train_no, s.score
FROM influence_numbered AS s JOIN influence_tasks AS t USING (task_no);

-- TracInCP (the sum over checkpoints) with the task each row belongs to.
CREATE OR REPLACE VIEW tracin_cp AS
SELECT t.task_key, t.seed, t.variant, s.test_no, s.train_no, s.score
FROM tracin_cp_numbered AS s JOIN influence_tasks AS t USING (task_no);

-- Each test example's proponents and opponents with the task each row belongs to.
CREATE OR REPLACE VIEW proponents AS
SELECT t.task_key, t.seed, t.variant, s.checkpoint, s.test_no, s.side, s.rank, s.train_no
FROM proponents_numbered AS s JOIN influence_tasks AS t USING (task_no);

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
