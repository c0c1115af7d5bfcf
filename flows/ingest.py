"""Flow `ingest`: add a source's new and changed documents to a corpus."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_table_artifact

from lloco_core.config import IngestConfig
from tasks.ingest import ingest_task


@flow(name="ingest", flow_run_name="ingest-{config.corpus}")
def ingest_flow(config: IngestConfig) -> dict[str, Any]:
    summary = ingest_task(config)
    create_table_artifact(
        key=f"ingest-{config.corpus}".lower().replace("_", "-").replace(".", "-"),
        table=[{k: summary[k] for k in ("documents_added", "documents_updated", "documents_unchanged", "parts_committed")} | {"skipped": len(summary["skipped"])}],
        description=f"Ingest of {config.source} into {config.corpus}",
    )
    return summary
