-- name: last_completed_run_of
-- The last completed run of a spec, by its name: the pilot `langspec plan` sizes detectable effects on.
SELECT max(run_id) AS run_id FROM runs WHERE spec_name = $spec_name AND status = 'completed';
