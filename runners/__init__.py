"""The ML work of the study, one module per stage; pure PyTorch and transformers, no DuckDB."""
