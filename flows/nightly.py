"""Flow `nightly`: for every configured corpus, ingest its sources' new documents and compress them.

Planning reads commit records only, so a night with nothing new costs a listing per corpus. Corpora
run one after another: on one GPU they would queue on the `gpu` slot anyway.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from ._runtime import FORM
from .compress import artifact_key
from .pipeline import CorpusJob, PipelineConfig, PipelineStages, pipeline_flow


class NightlyConfig(BaseModel):
    """The `compress-nightly` form: the corpora to keep compressed."""

    model_config = FORM

    corpora: list[CorpusJob] = Field(default_factory=list, description="Corpora to bring up to date, in order; a corpus with no sources only compresses what was ingested elsewhere.")


def _run_name() -> str:
    corpora = NightlyConfig.model_validate(flow_run.parameters["config"]).corpora
    return "nightly-" + ("-".join(c.corpus for c in corpora[:3]) + ("-etc" if len(corpora) > 3 else "") or "no-corpora")


@flow(name="nightly", flow_run_name=_run_name)
def nightly_flow(config: NightlyConfig) -> list[dict[str, Any]]:
    rows = []
    for corpus in config.corpora:
        stages = PipelineStages(ingest=bool(corpus.sources), compress=True, finetune=False, evaluate=False)
        summary = pipeline_flow(PipelineConfig(**corpus.model_dump(), stages=stages))
        compressed = summary["compress"] or {}
        rows.append({"corpus": corpus.corpus, "documents_compressed": compressed.get("documents_compressed", 0), "documents_skipped": compressed.get("documents_skipped", 0), "shards_committed": compressed.get("shards_committed", 0)})
    get_run_logger().info("nightly: %s", rows)
    if rows:
        create_table_artifact(key=artifact_key("nightly"), table=rows, description="Corpora brought up to date tonight")
    return rows
