-- name: run_stages
-- The stages with tasks in a run (in one sweep point of it, unless $point is NULL), ran or cached, and 'planted'
-- when its fine-tuning planted modules: what an analysis that returns no rows may have lacked.
WITH chosen AS (
    SELECT DISTINCT task_key FROM points WHERE run_id = $run_id AND ($point IS NULL OR point = $point)
)
SELECT DISTINCT stage FROM task_params WHERE task_key IN (SELECT task_key FROM chosen)
UNION
SELECT 'planted' FROM task_params
WHERE task_key IN (SELECT task_key FROM chosen) AND stage = 'finetune' AND (params -> 'planted') IS NOT NULL;
