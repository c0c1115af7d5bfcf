"""Per-corpus LoRA finetuning on compressed contexts: config, examples, DeepSpeed engine, store checkpoints.

The entry point is `lloco_core.training.finetune.finetune(FinetuneConfig)` (also `python -m lloco_core.training.finetune`).
"""
