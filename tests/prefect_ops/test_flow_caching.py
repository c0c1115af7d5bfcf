"""Caching across flow runs: a shard task's cache record lives under the store root (a local folder,
or S3 through a saved RemoteFileSystem block), a second run is a cache hit, and a record whose output
has disappeared from the store is recomputed, not trusted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect import flow

from flows._runtime import configured
from lloco_core.config import CompressConfig, IngestConfig, StoreConfig
from lloco_core.model.compress import CompressPlan, encoder_settings, plan_compress
from lloco_core.store.documents import ingest
from lloco_core.store.embeddings import EmbeddingStore
from lloco_core.store.storage import Store
from tasks.compress import compress_shard_task
from tests.conftest import make_text
from tests.s3server import SeaweedS3, _pid_alive

from .conftest import Stack

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@flow(name="compress-one-shard")
def compress_one_shard(config: CompressConfig, plan: CompressPlan) -> dict[str, Any]:
    """Submit the first planned shard's task, as the compress flow does; report its final state."""
    settings = encoder_settings(config)
    state = compress_shard_task(config, settings, plan.shards[0], return_state=True)
    return {"state": state.name, "result": state.result()}


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    server = SeaweedS3(tmp_path_factory.mktemp("weed")).start()
    try:
        yield server
    finally:
        pid = server.pid
        server.stop()
        assert not _pid_alive(pid)


def test_second_run_is_a_cache_hit_and_a_lost_output_is_recomputed(prefect_api: Stack, tiny_model: Path, tmp_path: Path, root: str) -> None:
    source = tmp_path / "docs"
    source.mkdir()
    for i in range(2):
        (source / f"d{i}.txt").write_text(make_text(i, 150))
    ingest(IngestConfig(root=root, corpus="c", source=str(source)))
    config = CompressConfig(root=root, corpus="c", model=str(tiny_model), shard_size=2, device="cpu")
    settings = encoder_settings(config)
    store = Store(root)
    plan = plan_compress(store, "c", settings, config.shard_size)  # planned once, like a run that is retried
    run = configured(compress_one_shard, StoreConfig(root=root))
    log = EmbeddingStore(store, "c", settings.key).log
    shard = plan.shards[0].name

    first = run(config, plan)
    assert first["state"] == "Completed" and log.is_committed(shard)
    assert store.fs.find(store.path("_prefect", "results")), "results persist under the store root"

    second = run(config, plan)  # a new flow run: cache hit from the record under the root
    assert second["state"] == "Cached"
    assert second["result"] == first["result"]

    store.fs.rm(log.record_path(shard))  # the output disappears from the store ...
    store.fs.rm(log.data_path(f"shards/{shard}.parquet"))
    third = run(config, plan)  # ... so the cached record is not trusted: the shard is encoded again
    assert third["state"] == "Completed" and third["result"]["segments"] == first["result"]["segments"]
    assert log.is_committed(shard) and store.exists(log.data_path(f"shards/{shard}.parquet"))
