"""End to end on a real Prefect server: deployments from deployments/prefect.yaml, process workers,
runs triggered through the REST API exactly as the UI does, and the store checked afterwards.

One server, one worker per pool, for the session (conftest.py); everything is stopped by PID. Timings are
printed (run with -s to see them).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from lloco.serving import GPU_POOL

from .conftest import SAMPLE, Stack, committed_shards

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


QA = SAMPLE.parent / "sample_qa.jsonl"


def pipeline_config(root: str, corpus: str, sources: list[str], model: Path) -> dict[str, Any]:
    """The `pipeline` form filled in as a user would: JSON, with defaults left out."""
    return {
        "root": root, "corpus": corpus, "sources": sources, "model": str(model),
        "compress": {"shard_size": 2, "device": "cpu"},
        "finetune": {"qa": str(QA), "max_steps": 4, "learning_rate": 1e-3, "device": "cpu"},
        "evaluate": {"limit": 3, "systems": ["lloco_base", "lloco"], "max_new_tokens": 4, "device": "cpu"},
    }


def task_runs(stack: Stack, flow_run_ids: list[str], name: str) -> list[dict[str, Any]]:
    r = stack.request("POST", "/task_runs/filter", json={"task_runs": {"name": {"any_": [name]}}, "flow_runs": {"id": {"any_": flow_run_ids}}})
    r.raise_for_status()
    return r.json()


def subflow_ids(stack: Stack, parent_id: str) -> list[str]:
    r = stack.request("POST", "/flow_runs/filter", json={"flow_runs": {"parent_flow_run_id": {"any_": [parent_id]}}})
    r.raise_for_status()
    return [run["id"] for run in r.json()]


def test_pipeline_from_the_api_then_all_cached(stack: Stack, tiny_model: Path, tmp_path: Path) -> None:
    root = str(tmp_path / "store")
    source = shutil.copytree(SAMPLE, tmp_path / "sample")
    config = pipeline_config(root, "sample", [str(source)], tiny_model)

    first, first_s = stack.run("pipeline", "pipeline", config)
    shards = committed_shards(root, "sample", tiny_model)
    assert len(shards) == 3  # 6 documents, 2 per shard
    table = {row["stage"]: row for row in stack.artifact("pipeline-sample", first["id"])}
    assert table["ingest"]["documents_added"] == 6
    assert table["compress"]["documents_compressed"] == 6
    assert table["finetune"]["steps"] == 4 and table["finetune"]["adapter_key"].startswith("lora-")
    adapter = Path(root) / "sample" / "adapters" / table["finetune"]["adapter_key"]
    assert (adapter / "adapter_model.safetensors").is_file() and (adapter / "_commits").is_dir()
    assert table["evaluate"]["examples"] == 3 and set(table["evaluate"]["scores"]) == {"LLoCO, no adapter", "LLoCO + adapter"}
    # only a QA file: finetune held out a share of its documents, evaluate scored exactly those
    assert table["evaluate"]["eval_set"] == str(adapter / "heldout.jsonl") and table["finetune"]["heldout_questions"] > 0
    heldout = {json.loads(line)["doc_id"] for line in (adapter / "heldout.jsonl").read_text().splitlines()}
    trained_on = {json.loads(line)["doc_id"] for line in QA.read_text().splitlines()} - heldout
    evaluated = {json.loads(line)["doc_id"] for line in Path(table["evaluate"]["out"], "predictions.jsonl").read_text().splitlines()}
    assert heldout and trained_on and evaluated <= heldout and not evaluated & trained_on
    assert first["name"] == "pipeline-sample"
    adapter_files = {p.name: p.stat().st_mtime_ns for p in adapter.rglob("*") if p.is_file()}

    second, second_s = stack.run("pipeline", "pipeline", config)
    assert committed_shards(root, "sample", tiny_model) == shards  # same commit records: nothing rewritten
    table = {row["stage"]: row for row in stack.artifact("pipeline-sample", second["id"])}
    assert table["ingest"]["documents_added"] == 0 and table["ingest"]["documents_unchanged"] == 6
    assert table["compress"]["documents_compressed"] == 0 and table["compress"]["documents_skipped"] == 6
    # no new training step: the finetune task is a cache hit and the adapter folder is untouched
    (finetune,) = task_runs(stack, subflow_ids(stack, second["id"]), "finetune-sample")
    assert finetune["state"]["name"] == "Cached"
    assert {p.name: p.stat().st_mtime_ns for p in adapter.rglob("*") if p.is_file()} == adapter_files
    assert table["evaluate"]["cached"] is True
    print(f"\n[e2e] pipeline trigger->completed: first {first_s:.1f} s, all-cached {second_s:.1f} s")


@pytest.mark.parametrize(
    "bad",
    [
        {"corpus": "../escape"},  # name pattern
        {"compress": {"shard_size": 0}},  # minimum 1
        {"compress": {"device": "tpu"}},  # enum
        {"model": None},  # required
    ],
)
def test_invalid_parameters_rejected_before_any_run(stack: Stack, tiny_model: Path, tmp_path: Path, bad: dict[str, Any]) -> None:
    dep = stack.deployment("pipeline", "pipeline")
    count = lambda: stack.request("POST", "/flow_runs/count", json={"deployments": {"id": {"any_": [dep["id"]]}}}).json()  # noqa: E731
    before = count()
    config = pipeline_config(str(tmp_path / "store"), "ok", [str(SAMPLE)], tiny_model) | bad
    config = {k: v for k, v in config.items() if v is not None}
    r = stack.trigger("pipeline", "pipeline", config)
    assert r.status_code == 409, r.text
    assert "Validation failed" in r.text or "validation" in r.text.lower()
    assert count() == before
    assert not (tmp_path / "store").exists()


def test_nightly_deployment_has_its_cron_and_timezone(stack: Stack) -> None:
    dep = stack.deployment("nightly", "compress-nightly")
    assert [s["schedule"]["cron"] for s in dep["schedules"]] == ["0 2 * * *"]
    assert [s["schedule"]["timezone"] for s in dep["schedules"]] == ["UTC"]
    assert all(s["active"] for s in dep["schedules"])
    assert dep["work_pool_name"] == GPU_POOL
    pool = stack.request("GET", f"/work_pools/{GPU_POOL}").json()
    assert pool["concurrency_limit"] == 1
    gpu = stack.request("GET", "/v2/concurrency_limits/gpu").json()
    assert gpu["limit"] == 1 and gpu["active"]
