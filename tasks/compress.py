"""Compress tasks: one plan task, then one task per shard (never per document: hundreds of tasks
per run at most). Shard tasks are cached by the shard's content key while its commit record exists."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from prefect import get_run_logger, task

from lloco_core.config import CompressConfig
from lloco_core.model.compress import CompressPlan, EncoderSettings, ShardPlan, ShardResult, cached_compressor, compress_shard, encoder_settings, plan_compress
from lloco_core.store.embeddings import EmbeddingStore
from lloco_core.store.storage import Store

from ._caching import STORAGE_RETRIES, CommittedOutput


@task(name="plan-compress", task_run_name="plan-compress-{config.corpus}", **STORAGE_RETRIES)
def plan_compress_task(config: CompressConfig) -> tuple[EncoderSettings, CompressPlan]:
    """Read commit records only: the cost is what is new, not the corpus size."""
    settings = encoder_settings(config)
    plan = plan_compress(Store.from_config(config), config.corpus, settings, config.shard_size)
    get_run_logger().info("%s: %d shards to compress, %d documents already committed under %s", config.corpus, len(plan.shards), plan.documents_skipped, plan.encoder_key)
    return settings, plan


def _shard_key(inputs: dict[str, Any]) -> str:
    return f"lloco/compress/{inputs['config'].corpus}/{inputs['settings'].key}/{inputs['shard'].name}"


def _shard_committed(inputs: dict[str, Any]) -> bool:
    config: CompressConfig = inputs["config"]
    return EmbeddingStore(Store.from_config(config), config.corpus, inputs["settings"].key).data.holds(inputs["shard"].name)


@task(name="compress-shard", task_run_name="compress-{config.corpus}-{shard.name}", cache_policy=CommittedOutput(_shard_key, _shard_committed), **STORAGE_RETRIES)
def compress_shard_task(config: CompressConfig, settings: EncoderSettings, shard: ShardPlan) -> dict[str, Any]:
    """Encode, write and commit one shard; the model loads once per worker process."""
    compressor = cached_compressor(settings, config.device)
    result: ShardResult = compress_shard(Store.from_config(config), config.corpus, settings, shard, compressor, config.batch_size, config.batch_positions)
    rate = result.tokens / result.seconds if result.seconds else 0.0
    get_run_logger().info("%s: %d documents, %d segments, %.1f documents/s, %.0f tokens/s", shard.name, result.documents, result.segments, result.documents / max(result.seconds, 1e-9), rate)
    return asdict(result)
