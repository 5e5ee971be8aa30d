"""Training stage (needs torch): models, trainer, checkpoints."""
