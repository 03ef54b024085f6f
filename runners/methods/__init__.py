"""The methods the stages use: toy languages, models and batches, head masking and importance, the
head-pruning loop, the training loop, and TracIn's inner products (influence). No spec, no store."""
