-- name: export_subnetworks
-- Each language's mask of one run and sweep point, with the last checkpoints of the fine-tuning it was pruned from (subnetwork) and of the sparse fine-tuning that used it (sft), and their test accuracy.
WITH point AS (SELECT task_key FROM point_tasks($run_id, $point)),
masks AS (SELECT * FROM subnetwork_masks WHERE model = 'multilingual' AND task_key IN (SELECT task_key FROM point)),
last_checkpoints AS (
    SELECT DISTINCT ON (task_key) task_key, seed, variant, path FROM checkpoints
    WHERE task_key IN (SELECT task_key FROM point) ORDER BY task_key, epoch DESC
),
accuracy AS (
    SELECT seed, variant, language, value FROM final_metrics
    WHERE task_key IN (SELECT task_key FROM point) AND split = 'test' AND metric = 'accuracy'
)
SELECT m.seed, m.language, m.task_key AS prune_task,
       list(CAST(m.kept AS INTEGER) ORDER BY m.layer, m.head) AS kept, max(m.layer) + 1 AS layers, max(m.head) + 1 AS heads,
       any_value(full_ckpt.path) AS subnetwork_checkpoint, any_value(sft_ckpt.path) AS sft_checkpoint,
       any_value(sub_acc.value) AS subnetwork_accuracy, any_value(sft_acc.value) AS sft_accuracy
FROM masks AS m
JOIN last_checkpoints AS full_ckpt ON full_ckpt.task_key = m.finetune_key
LEFT JOIN last_checkpoints AS sft_ckpt ON sft_ckpt.variant = 'sft' AND sft_ckpt.seed = m.seed
LEFT JOIN accuracy AS sub_acc ON sub_acc.variant = 'subnetwork' AND sub_acc.seed = m.seed AND sub_acc.language = m.language
LEFT JOIN accuracy AS sft_acc ON sft_acc.variant = 'sft' AND sft_acc.seed = m.seed AND sft_acc.language = m.language
GROUP BY m.seed, m.language, m.task_key
ORDER BY m.seed, m.language;
