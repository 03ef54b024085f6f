-- name: run_primary_point
-- A run's sweep (fields and their values, in spec order) and its analysis.primary_point, as JSON text
-- (NULL where the run has none): store/points.py names the point the findings call primary.
SELECT json_extract(spec, '$.sweep')::VARCHAR AS sweep, json_extract(spec, '$.analysis.primary_point')::VARCHAR AS primary_point
FROM runs WHERE run_id = $run_id;
