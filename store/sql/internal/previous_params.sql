-- name: previous_params
-- The params of each task name as last recorded in the store: what `langspec plan` compares a spec's tasks with.
SELECT name, arg_max(params, run_id) AS params FROM tasks WHERE outcome IN ('ran', 'cached') GROUP BY name;
