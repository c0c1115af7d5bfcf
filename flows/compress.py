"""Flow `compress`: plan the uncommitted work from commit records, one task per shard, each commits."""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.futures import as_completed

from lloco_core.config import CompressConfig
from lloco_core.model.compress import CompressSummary, ShardResult
from tasks.compress import compress_shard_task, plan_compress_task


def artifact_key(*parts: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return "-".join(parts).lower().replace("_", "-").replace(".", "-")


@flow(name="compress", flow_run_name="compress-{config.corpus}")
def compress_flow(config: CompressConfig) -> dict[str, Any]:
    started = time.perf_counter()
    settings, plan = plan_compress_task(config)
    summary = CompressSummary(config.corpus, plan.encoder_key, plan.store, documents_skipped=plan.documents_skipped)
    if plan.shards:
        progress = create_progress_artifact(0.0, key=artifact_key("compress", config.corpus), description=f"Shards of {config.corpus} committed")
        futures = [compress_shard_task.submit(config, settings, shard) for shard in plan.shards]
        for done, future in enumerate(as_completed(futures), start=1):
            summary.add(ShardResult(**future.result()))
            update_progress_artifact(progress, 100.0 * done / len(futures))
    summary.seconds = round(time.perf_counter() - started, 3)
    summary.tokens_per_s = round(summary.tokens / summary.seconds, 1) if summary.seconds else 0.0
    get_run_logger().info("compressed %d documents (%d skipped), %.0f tokens/s", summary.documents_compressed, summary.documents_skipped, summary.tokens_per_s)
    create_table_artifact(
        key=artifact_key("compress", config.corpus, "summary"),
        table=[{k: v for k, v in summary.as_dict().items() if k != "shards"}],
        description=f"Compression of {config.corpus} under {plan.encoder_key}",
    )
    return summary.as_dict()
