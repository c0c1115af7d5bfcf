"""One real Prefect server for the session: lloco's pools, `gpu` limit and deployments from
deployments/prefect.yaml, and a process worker per pool, all started here and stopped by PID.

`stack` is for tests that go through the API as the UI does; `prefect_api` points this test
process at the same server, for flows called in-process.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from lloco.prefect_local import LocalPrefectServer, start_worker, stop_process
from lloco.serving import CPU_POOL, GPU_POOL, REPO_ROOT, set_up
from lloco_core.config import CompressConfig
from lloco_core.model.compress import encoder_settings
from lloco_core.store.embeddings import EmbeddingStore
from lloco_core.store.storage import Store
from tests.s3server import SeaweedS3

SAMPLE = REPO_ROOT / "lloco_core" / "data" / "sample_corpus"
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


class Stack:
    """A running server with the lloco deployments and a worker on each pool."""

    def __init__(self, server: LocalPrefectServer, logs: Path) -> None:
        self.server = server
        self.logs = logs
        self.client = httpx.Client(base_url=server.api_url, timeout=30, trust_env=False)

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Retry 429/502/503 with backoff, as Prefect's own client and the UI do: a busy local
        server (SQLite under a loaded 2-core machine) answers 503 for a moment."""
        for attempt in range(8):
            r = self.client.request(method, url, **kwargs)
            if r.status_code not in (429, 502, 503):
                return r
            time.sleep(min(float(r.headers.get("Retry-After", 0)) or 0.5 * 2**attempt, 10))
        return r

    def deployment(self, flow: str, name: str) -> dict[str, Any]:
        r = self.request("GET", f"/deployments/name/{flow}/{name}")
        r.raise_for_status()
        return r.json()

    def trigger(self, flow: str, name: str, config: dict[str, Any]) -> httpx.Response:
        """What the UI's "Run" button sends: the form's JSON under the flow's parameter name."""
        dep = self.deployment(flow, name)
        return self.request("POST", f"/deployments/{dep['id']}/create_flow_run", json={"parameters": {"config": config}})

    def wait(self, flow_run_id: str, timeout: float = 240) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.request("GET", f"/flow_runs/{flow_run_id}").json()
            if run["state_type"] in TERMINAL:
                return run
            time.sleep(0.5)
        raise AssertionError(f"flow run {flow_run_id} not finished in {timeout} s; worker logs:\n{self.worker_logs()}")

    def run(self, flow: str, name: str, config: dict[str, Any]) -> tuple[dict[str, Any], float]:
        t0 = time.monotonic()
        r = self.trigger(flow, name, config)
        assert r.status_code == 201, r.text
        run = self.wait(r.json()["id"])
        assert run["state_type"] == "COMPLETED", f"{run['state_type']}: {run['state']}\n{self.worker_logs()}"
        return run, time.monotonic() - t0

    def artifact(self, key: str, flow_run_id: str) -> list[dict[str, Any]]:
        """The table artifact `key` written by `flow_run_id` (or, with subflows, its children)."""
        r = self.request("POST", "/artifacts/filter", json={"artifacts": {"key": {"any_": [key]}}, "sort": "CREATED_DESC"})
        r.raise_for_status()
        for artifact in r.json():
            if artifact["flow_run_id"] == flow_run_id:
                data = artifact["data"]
                return json.loads(data) if isinstance(data, str) else data
        raise AssertionError(f"no artifact {key!r} from flow run {flow_run_id}")

    def worker_logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(self.logs.glob("worker-*.log")))


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("prefect-home")
    server = LocalPrefectServer(home)
    t0 = time.monotonic()
    server.start(timeout=120)
    workers = []
    try:
        set_up(server, gpus=1)
        print(f"\n[prefect] server {server.start_seconds:.1f} s, set-up + deploy {time.monotonic() - t0 - server.start_seconds:.1f} s")
        env = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
        for pool in (GPU_POOL, CPU_POOL):
            workers.append(start_worker(server, pool, home / f"worker-{pool}.log", env, name=f"test-{pool}", cwd=REPO_ROOT))
        stack = Stack(server, home)
        yield stack
        stack.client.close()
    finally:
        for worker in workers:
            stop_process(worker)
            assert worker.poll() is not None
        server.stop()
        assert not server.running


@pytest.fixture
def prefect_api(stack: Stack) -> Iterator[Stack]:
    """Flows called in this process report to the session's server (never an ephemeral one)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: stack.server.api_url, PREFECT_HOME: str(stack.server.home)}):
        yield stack
        # send this test's logs and events now, while the server is up (not at interpreter exit)
        APILogWorker.drain_all(timeout=10)
        EventsWorker.drain_all(timeout=10)


@pytest.fixture(params=["local", "s3"])
def root(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A local root, then a SeaweedFS one (the test module provides an `s3` server fixture)."""
    if request.param == "local":
        return str(tmp_path / "store")
    s3: SeaweedS3 = request.getfixturevalue("s3")
    s3.make_bucket("lloco")
    for name, value in s3.env().items():  # endpoint and keys from the environment, as on a worker
        monkeypatch.setenv(name, value)
    return f"s3://lloco/{tmp_path.name}"


def committed_shards(root: str, corpus: str, model: Path) -> dict[str, Any]:
    """Commit records of the corpus under the CPU encoder key of `model`, by shard name."""
    key = encoder_settings(CompressConfig(root=root, corpus=corpus, model=str(model), device="cpu")).key
    return {r.name: r.model_dump(mode="json") for r in EmbeddingStore(Store(root), corpus, key).log.records()}
