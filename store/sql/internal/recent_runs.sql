-- name: recent_runs
-- The last $n runs, newest first, with the driver's pid and host (`langspec status`).
SELECT run_id, spec_name, status, started_at, finished_at, pid, host FROM runs ORDER BY run_id DESC LIMIT $n;
