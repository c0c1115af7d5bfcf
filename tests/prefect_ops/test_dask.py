"""Scale-out: the pipeline with shard tasks on a local Dask cluster of 2 worker processes writes the
same store (same shard names, same rows, same summary numbers) as the default thread runner."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from flows.pipeline import PipelineConfig, pipeline_flow
from tests.conftest import make_text

from .conftest import Stack, committed_shards

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]


def _tables(root: str, model: Path) -> dict[str, object]:
    records = committed_shards(root, "c", model)
    prefix = Path(root) / "c" / "embeddings"
    (encoder,) = [p for p in prefix.iterdir() if p.is_dir()]
    return {name: pq.read_table(encoder / rec["shard"]) for name, rec in records.items()}


def test_dask_runner_writes_the_same_store(prefect_api: Stack, tiny_model: Path, tmp_path: Path) -> None:
    source = tmp_path / "docs"
    source.mkdir()
    for i in range(6):
        (source / f"d{i}.txt").write_text(make_text(50 + i, 60 + 40 * i))
    base = {"corpus": "c", "sources": [str(source)], "model": str(tiny_model), "compress": {"shard_size": 2, "device": "cpu"}, "stages": {"finetune": False, "evaluate": False}}
    threads = pipeline_flow(PipelineConfig(root=str(tmp_path / "threads"), **base))
    dask = pipeline_flow(PipelineConfig(root=str(tmp_path / "dask"), scale={"task_runner": "dask", "dask_workers": 2}, **base))
    assert threads["compress"]["shards_committed"] == dask["compress"]["shards_committed"] == 3
    a, b = _tables(str(tmp_path / "threads"), tiny_model), _tables(str(tmp_path / "dask"), tiny_model)
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].equals(b[name]), name
