-- name: controls_points
-- The sweep points of a run whose fine-tuning planted language modules, with their overlap (specs/controls.yaml).
SELECT DISTINCT p.point, CAST((t.params -> 'planted') ->> 'overlap' AS DOUBLE) AS overlap
FROM points AS p JOIN tasks AS t ON t.run_id = p.run_id AND t.task_key = p.task_key
WHERE p.run_id = $run_id AND t.stage = 'finetune' AND (t.params -> 'planted') IS NOT NULL
ORDER BY overlap, p.point;
