-- name: param_values_split
-- The splits the store has metrics of: the values `analyze --param split=...` accepts.
SELECT DISTINCT split FROM metrics ORDER BY 1;
