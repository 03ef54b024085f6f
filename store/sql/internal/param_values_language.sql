-- name: param_values_language
-- The languages the store has metrics or subnetworks of: the values `analyze --param language=...` accepts.
SELECT DISTINCT language FROM metrics UNION SELECT DISTINCT language FROM subnetworks ORDER BY 1;
