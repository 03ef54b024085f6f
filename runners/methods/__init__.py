"""The methods the stages share: the spec sections they take (sections), toy languages, models and
batches, head masking and importance, the head-pruning loop, the training loop and the fine-tuning
loop around it, and TracIn's inner products (influence). They read and write through the modules no
stage owns (runners.inputs, runners.tables, runners.context) and never import a stage
(pyproject.toml's import contracts)."""
