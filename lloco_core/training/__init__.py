"""Per-corpus LoRA finetuning on compressed contexts: config, examples, DeepSpeed engine, store checkpoints.

The entry point is `lloco_core.finetune.finetune(FinetuneConfig)` (also `python -m lloco_core.finetune`).
"""
