"""Prefect flows chaining the tasks: ingest, compress, finetune, evaluate, pipeline, backfill."""
