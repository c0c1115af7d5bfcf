"""What orchestration costs. Row (b): the compress flow against the bare library call on the same
work, side by side (interleaved repeats, fresh store roots, the model loaded once for both, as a
worker keeps it); the goal is about a 60 s flow. Also, standalone: per-shard overhead with one
document per shard, and how many trivially small tasks one flow run submits before the local
server falls behind.

    .venv/bin/python bench/prefect_ops.py --row [--flow-seconds 60 --repeats 2]   # row (b) only
    .venv/bin/python bench/prefect_ops.py [--shards 24] [--tasks 100,300,1000]

Starts its own Prefect server on a free 127.0.0.1 port with a temporary PREFECT_HOME and stops it.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from prefect import flow, task
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker
from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

from bench.common import Goal, Row, bench_model, interleave, median_spread, ratio_row, timed, write_corpus
from flows._runtime import configured
from flows.compress import compress_flow
from lloco.prefect_local import LocalPrefectServer
from lloco_core.config import CompressConfig, IngestConfig, StoreConfig
from lloco_core.model.compress import cached_compressor, compress, encoder_settings
from lloco_core.model.tiny import build_tiny_compressor
from lloco_core.store.documents import ingest


def _corpus(folder: Path, n_docs: int, words: int = 120) -> None:
    rng = random.Random(0)
    vocab = ["river", "castle", "storm", "harbor", "letter", "garden", "winter", "bridge", "tower", "lantern", "merchant", "silver"]
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


GOAL_OVERHEAD = Goal("<=", 0.03)


def flow_overhead(work: Path, server: LocalPrefectServer, quick: bool, repeats: int, flow_seconds: float) -> list[Row]:
    """Row b: the same corpus compressed by `compress()` and by the compress flow (one task per
    shard, results persisted, artifacts), each into a fresh root, interleaved. The corpus is sized
    from a first library run so the library call takes about `flow_seconds`, in ~10 shards."""
    hidden, layers, segment, summary = (64, 2, 256, 8) if quick else (512, 4, 1536, 50)
    model = bench_model(work, hidden, layers, segment, summary)
    probe = write_corpus(work / "flow-probe", 2, 300 if quick else 1300, 500)
    runs = iter(range(10**6))

    def library(source: Path) -> float:
        root = str(work / f"flow-lib-{next(runs)}")
        ingest(IngestConfig(root=root, corpus="c", source=str(source)))
        config = CompressConfig(root=root, corpus="c", model=str(model), device="cpu", shard_size=shard_size)
        return timed(lambda: compress(config))

    cached_compressor(encoder_settings(CompressConfig(corpus="c", model=str(model), device="cpu")), "cpu")  # loaded once for both sides
    shard_size = 1
    library(probe)  # warm-up: the first compress of a process pays one-time costs
    per_doc = library(probe) / 2  # seconds for one ~1.5k-token document
    n_docs = max(2, round(flow_seconds / per_doc)) if not quick else 4
    shard_size = max(1, n_docs // 10)
    source = write_corpus(work / "flow-docs", n_docs, 300 if quick else 1300, 600)

    def flow_run(corpus: Path = source, documents: int = n_docs) -> float:
        root = str(work / f"flow-flow-{next(runs)}")
        ingest(IngestConfig(root=root, corpus="c", source=str(corpus)))
        config = CompressConfig(root=root, corpus="c", model=str(model), device="cpu", shard_size=shard_size)
        start = time.perf_counter()
        summary = configured(compress_flow, StoreConfig(root=root))(config)
        assert summary["documents_compressed"] == documents, summary
        return time.perf_counter() - start

    with temporary_settings(updates={PREFECT_API_URL: server.api_url, PREFECT_HOME: str(server.home)}):
        flow_run(probe, 2)  # the first flow run imports and registers what every later one reuses
        values = interleave({"library": lambda: library(source), "flow": lambda: flow_run()}, repeats)
    overhead = [f / lib - 1 for lib, f in zip(values["library"], values["flow"])]
    extra = [f - lib for lib, f in zip(values["library"], values["flow"])]
    figure, spread = median_spread(overhead)
    row = ratio_row("b", f"compress flow vs library call, {n_docs} docs in {-(-n_docs // shard_size)} shard tasks", values, "library", "flow",
                    higher_is_better=False, unit_label="s", digits=".1f")
    return [Row("b", row.measure, row.baseline, row.candidate, figure, "%", spread, repeats, GOAL_OVERHEAD,
                f"overhead = flow / library - 1 per interleaved pair; extra seconds per flow run {min(extra):+.2f} to {max(extra):+.2f} "
                f"(median library run {statistics.median(values['library']):.1f} s, shard_size {shard_size})")]


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


def measure(work: Path, quick: bool = False, repeats: int | None = None, flow_seconds: float = 60.0) -> list[Row]:
    """Row b, with its own Prefect server (started and stopped here)."""
    server = LocalPrefectServer(work / "prefect-home")
    server.start(timeout=180)
    try:
        return flow_overhead(work, server, quick, repeats or (1 if quick else 2), flow_seconds)
    finally:
        APILogWorker.drain_all(timeout=5)  # send the runs' logs and events while the server still listens
        EventsWorker.drain_all(timeout=5)
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", type=int, default=24)
    parser.add_argument("--tasks", default="100,300,1000")
    parser.add_argument("--row", action="store_true", help="only row (b): flow vs library on ~--flow-seconds of work")
    parser.add_argument("--flow-seconds", type=float, default=60.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.row:
        from bench.common import emit

        with tempfile.TemporaryDirectory() as tmp:
            emit("prefect", measure(Path(tmp), args.quick, args.repeats, args.flow_seconds))
        return
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
