-- name: store_relation_names
-- The store's own tables and views: names an analysis' view must not take (the table mask_transfer).
SELECT table_name AS name FROM duckdb_tables() WHERE NOT temporary
UNION
SELECT view_name FROM duckdb_views() WHERE NOT temporary AND NOT internal
ORDER BY name;
