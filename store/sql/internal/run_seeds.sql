-- name: run_seeds
-- How many seeds a run's spec lists.
SELECT json_array_length(spec -> 'seeds') AS seeds FROM runs WHERE run_id = $run_id;
