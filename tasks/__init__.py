"""Prefect tasks: thin wrappers over one lloco_core call each (retries, cache keys, artifacts)."""
