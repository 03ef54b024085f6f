-- name: last_completed_run
-- The run the analyses read when none is named.
SELECT last_run() AS run_id;
