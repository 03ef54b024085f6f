-- name: run_task_outcomes
-- What happened to each task of one run, with the first line of its error (`langspec status`).
SELECT name, outcome, round(seconds, 1) AS seconds, device, task_key, split_part(error, chr(10), 1) AS error
FROM tasks WHERE run_id = $run ORDER BY started_at NULLS LAST, name;
