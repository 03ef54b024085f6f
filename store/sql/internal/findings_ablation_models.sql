-- name: findings_ablation_models
-- The ablation's sanity gate: each model fine-tuned without a language (mode without), its test accuracy and test examples on every other language of one sweep point.
SELECT seed, ablated, language, accuracy, examples
FROM ablation_effects
WHERE mode = 'without' AND language <> ablated
  AND task_key IN (SELECT task_key FROM point_tasks($run_id, $point))
ORDER BY seed, ablated, language;
