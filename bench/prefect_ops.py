"""What orchestration costs: per-shard overhead of the compress flow over the library, and how many
trivially small tasks one flow run submits before the local server falls behind.

    .venv/bin/python bench/prefect_ops.py [--shards 24] [--tasks 100,300,1000]

Starts its own Prefect server on a free 127.0.0.1 port with a temporary PREFECT_HOME and stops it.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from prefect import flow, task
from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

from flows._runtime import configured
from flows.compress import compress_flow
from lloco.prefect_local import LocalPrefectServer
from lloco_core.config import CompressConfig, IngestConfig, StoreConfig
from lloco_core.model.compress import compress
from lloco_core.model.tiny import build_tiny_compressor
from lloco_core.store.documents import ingest


def _corpus(folder: Path, n_docs: int, words: int = 120) -> None:
    rng = random.Random(0)
    vocab = "river castle storm harbor letter garden winter bridge tower lantern merchant silver".split()
    folder.mkdir(parents=True)
    for i in range(n_docs):
        (folder / f"d{i:04d}.txt").write_text(" ".join(rng.choice(vocab) for _ in range(words)) + ".")


def shard_overhead(work: Path, model: Path, n_shards: int) -> dict[str, Any]:
    """Same corpus, one document per shard: library compress() vs the compress flow (fresh roots)."""
    _corpus(work / "docs", n_shards)
    times = {}
    for mode in ("library", "library_warm", "flow"):
        root = str(work / mode)
        ingest(IngestConfig(root=root, corpus="c", source=str(work / "docs")))
        config = CompressConfig(root=root, corpus="c", model=str(model), shard_size=1, device="cpu")
        t0 = time.perf_counter()
        summary = compress(config) if mode.startswith("library") else configured(compress_flow, StoreConfig(root=root))(config)
        times[mode] = time.perf_counter() - t0
        assert (summary.shards_committed if mode.startswith("library") else summary["shards_committed"]) == n_shards
    per_shard = (times["flow"] - times["library_warm"]) / n_shards
    return {"shards": n_shards, "library_s": round(times["library_warm"], 2), "flow_s": round(times["flow"], 2), "overhead_per_shard_ms": round(1000 * per_shard, 1)}


@task
def trivial(i: int) -> int:
    return i


@flow(name="bench-many-tasks")
def many_tasks(n: int) -> int:
    return sum(f.result() for f in [trivial.submit(i) for i in range(n)])


def task_scaling(server: LocalPrefectServer, counts: list[int]) -> list[dict[str, Any]]:
    """Wall time of a flow run with n trivial tasks, then how long until the server shows all n."""
    rows = []
    with httpx.Client(base_url=server.api_url, timeout=30, trust_env=False) as client:
        for n in counts:
            t0 = time.perf_counter()
            state = many_tasks(n, return_state=True)
            wall = time.perf_counter() - t0
            run_id = str(state.state_details.flow_run_id)
            seen, lag_t0 = 0, time.perf_counter()
            while time.perf_counter() - lag_t0 < 60:
                seen = client.post("/task_runs/count", json={"flow_runs": {"id": {"any_": [run_id]}}, "task_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}}).json()
                if seen >= n:
                    break
                time.sleep(0.5)
            rows.append({"tasks": n, "flow_s": round(wall, 2), "ms_per_task": round(1000 * wall / n, 1), "completed_on_server": seen, "server_lag_s": round(time.perf_counter() - lag_t0, 1), "state": state.name})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", type=int, default=24)
    parser.add_argument("--tasks", default="100,300,1000")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = build_tiny_compressor(work / "tiny")
        server = LocalPrefectServer(work / "prefect-home")
        server.start(timeout=180)
        try:
            with temporary_settings(updates={PREFECT_API_URL: server.api_url, PREFECT_HOME: str(server.home)}):
                overhead = shard_overhead(work, model, args.shards)
                print(json.dumps(overhead), flush=True)
                scaling = task_scaling(server, [int(n) for n in args.tasks.split(",")])
            errors = sum(line.count(" 503 ") + line.count("database is locked") for line in server.log_path.read_text(errors="replace").splitlines())
        finally:
            server.stop()
    print(json.dumps({"shard_overhead": overhead, "task_scaling": scaling, "server_log_errors": errors}))


if __name__ == "__main__":
    main()
