-- name: run_exists
-- One row if the store has the run.
SELECT 1 AS found FROM runs WHERE run_id = $run_id;
