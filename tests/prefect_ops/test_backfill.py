"""Backfill through the `backfill` deployment: one child `pipeline` run per collection; a collection
already in the store costs its child a comparison, and nothing is rewritten."""

from __future__ import annotations

from pathlib import Path

import pytest

from lloco_core.config import CompressConfig, IngestConfig
from lloco_core.model.compress import compress
from lloco_core.store.documents import ingest
from tests.conftest import make_text

from .conftest import Stack, committed_shards

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _collection(folder: Path, seed: int, n_docs: int = 3) -> str:
    folder.mkdir(parents=True)
    for i in range(n_docs):
        (folder / f"doc{i}.txt").write_text(make_text(seed * 100 + i, 120))
    return str(folder)


def test_backfill_three_collections_one_already_done(stack: Stack, tiny_model: Path, tmp_path: Path) -> None:
    root = str(tmp_path / "store")
    sources = {name: _collection(tmp_path / name, seed) for seed, name in enumerate(["alpha", "beta", "gamma"])}
    # gamma is already in the store, committed by the library (no Prefect) with the same settings
    ingest(IngestConfig(root=root, corpus="gamma", source=sources["gamma"]))
    compress(CompressConfig(root=root, corpus="gamma", model=str(tiny_model), shard_size=2, device="cpu"))
    gamma_before = committed_shards(root, "gamma", tiny_model)

    config = {
        "root": root,
        "model": str(tiny_model),
        "compress": {"shard_size": 2, "device": "cpu"},
        "collections": [{"name": name, "source": source} for name, source in sources.items()],
    }
    parent, seconds = stack.run("backfill", "backfill", config)
    rows = stack.artifact("backfill", parent["id"])
    assert [r["collection"] for r in rows] == ["alpha", "beta", "gamma"]
    assert all(r["state"] == "Completed" for r in rows)
    work = {}
    for row in rows:
        child = stack.request("GET", f"/flow_runs/{row['flow_run_id']}").json()
        assert child["parent_task_run_id"] is not None  # linked under the backfill run in the UI
        work[row["collection"]] = {r["stage"]: r for r in stack.artifact(f"pipeline-{row['collection']}", row["flow_run_id"])}
    for name in ("alpha", "beta"):
        assert work[name]["ingest"]["documents_added"] == 3
        assert work[name]["compress"]["documents_compressed"] == 3
        assert len(committed_shards(root, name, tiny_model)) == 2
    assert work["gamma"]["ingest"]["documents_added"] == 0
    assert work["gamma"]["compress"]["documents_compressed"] == 0 and work["gamma"]["compress"]["documents_skipped"] == 3
    assert committed_shards(root, "gamma", tiny_model) == gamma_before
    print(f"\n[e2e] backfill of 3 collections trigger->completed {seconds:.1f} s")
