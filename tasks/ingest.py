"""Ingest task: new and changed documents only (the library skips unchanged ones by sha256)."""

from __future__ import annotations

from typing import Any

from prefect import task

from lloco_core.config import IngestConfig
from lloco_core.store.documents import ingest

from ._caching import STORAGE_RETRIES


@task(name="ingest", task_run_name="ingest-{config.corpus}", **STORAGE_RETRIES)
def ingest_task(config: IngestConfig) -> dict[str, Any]:
    return ingest(config).as_dict()
