-- name: run_top_k
-- A run's analysis.top_k: the analyses' default k.
SELECT CAST(spec -> 'analysis' ->> 'top_k' AS INTEGER) AS top_k FROM runs WHERE run_id = $run_id;
