-- name: point_has_ablation
-- Whether one sweep point of a run has leave-one-language-out results (what the influence-validity figure needs).
SELECT count(*) > 0 FROM ablation_examples
WHERE mode = 'without' AND task_key IN (SELECT task_key FROM point_tasks($run_id, $point));
