"""Flow `pipeline`: ingest -> compress -> finetune -> evaluate for one corpus, every stage cached.

Each stage is its own child flow run (named `<stage>-<corpus>` in the UI) with results persisted under
the store root, so a retry from the UI skips what the store already holds: ingest skips unchanged
documents, compress plans only uncommitted shards, finetune reuses a finished adapter key.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from pydantic import BaseModel, ConfigDict, Field

from lloco_core.config import IngestConfig, StoreConfig

from ._runtime import CORPUS_PATTERN, CompressOptions, ScaleOptions, configured, gpu_slot
from .compress import artifact_key, compress_flow
from .ingest import ingest_flow


class PipelineStages(BaseModel):
    """Which stages run; a switched-off stage is skipped, later ones read what the store holds."""

    model_config = ConfigDict(extra="forbid")

    ingest: bool = Field(default=True, description="Add the sources' new and changed documents.")
    compress: bool = Field(default=True, description="Encode uncompressed documents into committed shards.")


class CorpusJob(StoreConfig):
    """One corpus: where its documents come from, which compressor encodes them, how shards run."""

    corpus: str = Field(pattern=CORPUS_PATTERN, description="Corpus name: letters, digits, '.', '_' or '-' (one path segment).")
    sources: list[str] = Field(default_factory=list, description="Folders of .txt/.md, .jsonl or .parquet files, or fsspec URLs, ingested in order.")
    model: str = Field(description="AutoCompressor checkpoint: a local folder or a hub id already in the local cache.")
    compress: CompressOptions = Field(default_factory=CompressOptions)
    scale: ScaleOptions = Field(default_factory=ScaleOptions)


class PipelineConfig(CorpusJob):
    """The `pipeline` form: one corpus from sources to compressed shards (and on to an adapter and a report)."""

    stages: PipelineStages = Field(default_factory=PipelineStages)


def _counts(stage: str, summary: dict[str, Any]) -> dict[str, Any]:
    keys = {
        "ingest": ("documents_added", "documents_updated", "documents_unchanged"),
        "compress": ("documents_compressed", "documents_skipped", "shards_committed", "segments_written", "tokens_per_s"),
    }[stage]
    return {"stage": stage} | {k: summary.get(k) for k in keys}


@flow(name="pipeline", flow_run_name="pipeline-{config.corpus}")
def pipeline_flow(config: PipelineConfig) -> dict[str, Any]:
    logger = get_run_logger()
    started = time.perf_counter()
    result: dict[str, Any] = {"corpus": config.corpus, "ingest": [], "compress": None}
    rows = []
    if config.stages.ingest:
        for source in config.sources:
            summary = configured(ingest_flow, config)(IngestConfig(root=config.root, endpoint_url=config.endpoint_url, corpus=config.corpus, source=source))
            result["ingest"].append(summary)
            rows.append(_counts("ingest", summary) | {"source": source})
    if config.stages.compress:
        with gpu_slot(config.compress.device):
            summary = configured(compress_flow, config, config.scale)(config.compress.config(config, config.corpus, config.model))
        result["compress"] = summary
        rows.append(_counts("compress", summary))
    result["seconds"] = round(time.perf_counter() - started, 3)
    logger.info("pipeline %s done in %.1f s: %s", config.corpus, result["seconds"], rows)
    create_table_artifact(key=artifact_key("pipeline", config.corpus), table=rows, description=f"Stages of the pipeline run for {config.corpus}")
    return result
