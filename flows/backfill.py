"""Flow `backfill`: bring many collections into the store, one child `pipeline` run per collection.

Each child is a run of the `pipeline` deployment (ingest + compress by default; finetune and
evaluate with the same options as `pipeline` when switched on), so children spread over
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
from pydantic import BaseModel, Field

from lloco_core.config import StoreConfig

from ._runtime import CORPUS_PATTERN, FORM, CompressOptions, ScaleOptions
from .compress import artifact_key
from .pipeline import EvaluateOptions, FinetuneOptions, PipelineConfig, PipelineStages


class Collection(BaseModel):
    """A collection to backfill: it becomes the corpus `name`."""

    model_config = FORM

    name: str = Field(pattern=CORPUS_PATTERN, description="Corpus name for this collection.")
    source: str = Field(min_length=1, description="Folder, .jsonl/.parquet file or fsspec URL (s3://…) holding the collection.")
    qa: str | None = Field(default=None, description="QA JSONL of this collection for the finetune stage; empty = finetune.qa.")
    eval_set: str | None = Field(default=None, description="Eval JSONL of this collection for the evaluate stage; empty = evaluate.eval_set, else its QA file.")


class BackfillStages(PipelineStages):
    """Which stages each child runs; a backfill compresses by default, training and evaluating are opt-in."""

    finetune: bool = Field(default=False, description="Train (or reuse) each corpus's LoRA adapter; needs a QA file (the collection's qa or finetune.qa).")
    evaluate: bool = Field(default=False, description="Compare LLoCO with the baselines per corpus; needs an eval set or a QA file.")


class BackfillConfig(StoreConfig):
    """The `backfill` form: collections, the compressor, the stage options of `pipeline` (applied to
    every child), and which deployment runs each child."""

    model_config = FORM

    collections: list[Collection] = Field(min_length=1, description="One child run per collection.")
    model: str = Field(description="AutoCompressor checkpoint: a local folder or a hub id already in the local cache.")
    stages: BackfillStages = Field(default_factory=BackfillStages)
    compress: CompressOptions = Field(default_factory=CompressOptions)
    finetune: FinetuneOptions = Field(default_factory=FinetuneOptions)
    evaluate: EvaluateOptions = Field(default_factory=EvaluateOptions)
    scale: ScaleOptions = Field(default_factory=ScaleOptions)
    deployment: str = Field(default="pipeline/pipeline", description="The deployment ('flow/deployment') each child runs.")
    child_timeout_s: float = Field(default=6 * 3600, gt=0, description="How long to wait for each child run.")


def child_parameters(config: BackfillConfig, collection: Collection) -> dict[str, Any]:
    """The child's `pipeline` form, as JSON (exactly what the UI would send): the backfill's stage
    options, with the collection's own QA and eval files where it names them."""
    finetune = config.finetune.model_copy(update={"qa": collection.qa or config.finetune.qa})
    evaluate = config.evaluate.model_copy(update={"eval_set": collection.eval_set or config.evaluate.eval_set})
    child = PipelineConfig(
        root=config.root, endpoint_url=config.endpoint_url, corpus=collection.name, sources=[collection.source], model=config.model,
        stages=PipelineStages(**config.stages.model_dump()), compress=config.compress, finetune=finetune, evaluate=evaluate, scale=config.scale,
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
