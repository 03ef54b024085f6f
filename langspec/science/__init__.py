"""The science, layered over the store: the study's findings and their statistics (findings, stats,
tracin_vs_ablation, controls), the report, and the export of subnetworks. It reads the store through
its named SQL (store.queries) and imports nothing of the engine (the spec, the compiler, the
executors, the CLI) and no stage: pyproject.toml's import contracts."""
