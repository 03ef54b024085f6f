-- name: run_points
-- The sweep points of a run, in label order ('' for a run without a sweep).
SELECT DISTINCT point FROM points WHERE run_id = $run_id ORDER BY point;
