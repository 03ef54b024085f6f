-- name: run_spec_name
-- The name of the spec a run ran.
SELECT spec_name FROM runs WHERE run_id = $run_id;
