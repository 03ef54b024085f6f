-- name: ingested_tasks
-- The tasks whose results are in the store's tables: key and name.
SELECT task_key, name FROM results;
