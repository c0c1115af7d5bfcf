"""Flow `backfill`: bring many collections into the store, one child `pipeline` run per collection.

Each child is a run of the `pipeline` deployment (ingest + compress), so children spread over
every worker of the pool and each shows in the UI under this run. A collection already in the store
costs its child a hash comparison and a commit-record listing: nothing is written twice.
"""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.runtime import flow_run
from pydantic import BaseModel, ConfigDict, Field

from lloco_core.config import StoreConfig

from ._runtime import CORPUS_PATTERN, CompressOptions, ScaleOptions
from .compress import artifact_key
from .pipeline import PipelineConfig, PipelineStages


class Collection(BaseModel):
    """A collection to backfill: it becomes the corpus `name`."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=CORPUS_PATTERN, description="Corpus name for this collection.")
    source: str = Field(min_length=1, description="Folder, .jsonl/.parquet file or fsspec URL (s3://…) holding the collection.")


class BackfillConfig(StoreConfig):
    """The `backfill` form: collections, the compressor, and which deployment runs each child."""

    collections: list[Collection] = Field(min_length=1, description="One child run per collection.")
    model: str = Field(description="AutoCompressor checkpoint: a local folder or a hub id already in the local cache.")
    compress: CompressOptions = Field(default_factory=CompressOptions)
    scale: ScaleOptions = Field(default_factory=ScaleOptions)
    deployment: str = Field(default="pipeline/pipeline", description="The deployment ('flow/deployment') each child runs.")
    child_timeout_s: float = Field(default=6 * 3600, gt=0, description="How long to wait for each child run.")


def child_parameters(config: BackfillConfig, collection: Collection) -> dict[str, Any]:
    """The child's `pipeline` form, as JSON (exactly what the UI would send)."""
    child = PipelineConfig(
        root=config.root, endpoint_url=config.endpoint_url, corpus=collection.name, sources=[collection.source],
        model=config.model, compress=config.compress, scale=config.scale, stages=PipelineStages(ingest=True, compress=True, finetune=False, evaluate=False),
    )
    return {"config": child.model_dump(mode="json")}


def wait_for(flow_run_id: UUID, timeout: float, poll_s: float = 1.0) -> FlowRun:
    """Poll a child run until it is final (or the timeout passes; it is returned as it stands)."""
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(flow_run_id)
            if (run.state and run.state.is_final()) or time.monotonic() > deadline:
                return run
            time.sleep(poll_s)


def _run_name() -> str:
    names = [c.name for c in BackfillConfig.model_validate(flow_run.parameters["config"]).collections]
    return "backfill-" + "-".join(names[:3]) + (f"-and-{len(names) - 3}-more" if len(names) > 3 else "")


@flow(name="backfill", flow_run_name=_run_name)
def backfill_flow(config: BackfillConfig) -> list[dict[str, Any]]:
    """Start every child first (they run in parallel on the pool's workers), then wait for each."""
    logger = get_run_logger()
    children = [
        (collection, run_deployment(config.deployment, parameters=child_parameters(config, collection), timeout=0, flow_run_name=f"pipeline-{collection.name}"))
        for collection in config.collections
    ]
    rows = []
    for collection, child in children:
        finished = wait_for(child.id, config.child_timeout_s)
        state = finished.state
        rows.append({"collection": collection.name, "source": collection.source, "flow_run_id": str(child.id), "state": state.name if state else "unknown"})
        logger.info("backfill %s: child %s %s", collection.name, child.id, rows[-1]["state"])
    create_table_artifact(key=artifact_key("backfill"), table=rows, description="Child pipeline runs of this backfill")
    failed = [r for r in rows if r["state"] != "Completed"]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(rows)} backfill children did not complete: {failed}")
    return rows
