"""The compact LoRA/QLoRA trainer: models, data, loop, checkpoints, generation, metric store."""
