"""The DuckDB store: schema, ingest of finished tasks, and the SQL users and analyses run.

Never imports torch: reading results must stay fast and light."""
