"""Smoke test of lloco.prefect_local: a real local Prefect server, a process pool and a worker.

Timings and RSS are printed (run with -s to see them)."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lloco.prefect_local import (
    LocalPrefectServer,
    PrefectLocalError,
    port_is_free,
    run_cli,
    start_worker,
    stop_process,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) PIDs in process group ``pgid``, from Linux /proc."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":  # stat fields 3 and 5: state, pgrp
            pids.append(int(entry.name))
    return pids


def _group_alive(pgid: int, wait: float = 5.0) -> bool:
    """True if group ``pgid`` still has live members after ``wait`` s (orphans are reaped late)."""
    deadline = time.monotonic() + wait
    while _group_members(pgid):
        if time.monotonic() > deadline:
            return True
        time.sleep(0.1)
    return False


def _rss_mib(pgid: int) -> float:
    """Total resident memory of the processes in group ``pgid`` (Linux /proc), in MiB."""
    total_kib = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid:  # field 5 of stat: pgrp
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total_kib / 1024


def _client(server: LocalPrefectServer) -> httpx.Client:
    return httpx.Client(base_url=server.api_url, timeout=10, trust_env=False)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPrefectServer]:
    srv = LocalPrefectServer(tmp_path_factory.mktemp("prefect_home"))
    srv.start(timeout=120)
    print(f"\n[prefect_local] server start {srv.start_seconds:.1f} s, pid {srv.pid}, "
          f"RSS {_rss_mib(srv.pid):.0f} MiB")
    yield srv
    pid = srv.pid
    srv.stop()
    assert pid is not None and not _group_alive(pid)


def test_health_answers(server: LocalPrefectServer) -> None:
    with _client(server) as c:
        r = c.get("/health")
    assert r.status_code == 200
    assert r.json() is True


def test_second_server_refuses_busy_port(server: LocalPrefectServer, tmp_path: Path) -> None:
    other = LocalPrefectServer(tmp_path / "home", port=server.port)
    with pytest.raises(PrefectLocalError, match="in use"):
        other.start()
    assert other.proc is None


def test_create_process_pool(server: LocalPrefectServer) -> None:
    run_cli(server, "work-pool", "create", "smoke-create", "--type", "process")
    with _client(server) as c:
        r = c.get("/work_pools/smoke-create")
    assert r.status_code == 200
    assert r.json()["type"] == "process"


def test_worker_registers_and_stops(server: LocalPrefectServer, tmp_path: Path) -> None:
    pool, name = "smoke-worker", "smoke-worker-1"
    run_cli(server, "work-pool", "create", pool, "--type", "process")
    log = tmp_path / "worker.log"
    t0 = time.monotonic()
    proc = start_worker(server, pool, log, name=name)
    try:
        registered = None
        with _client(server) as c:
            while time.monotonic() - t0 < 20:
                assert proc.poll() is None, log.read_text(errors="replace")
                r = c.post(f"/work_pools/{pool}/workers/filter", json={})
                r.raise_for_status()
                if any(w["name"] == name for w in r.json()):
                    registered = time.monotonic() - t0
                    break
                time.sleep(0.5)
        assert registered is not None, f"worker not registered in 20 s:\n{log.read_text()}"
        rss = _rss_mib(proc.pid)
    finally:
        t1 = time.monotonic()
        code = stop_process(proc)
        stopped = time.monotonic() - t1
    print(f"\n[prefect_local] worker registered {registered:.1f} s, RSS {rss:.0f} MiB, "
          f"stop {stopped:.1f} s (exit {code})")
    assert proc.poll() is not None
    assert not _group_alive(proc.pid)
    assert server.running


def test_runs_left_by_a_stopped_serve_are_marked_crashed(server: LocalPrefectServer) -> None:
    """Ctrl-C of `lloco serve` mid-run left its runs Running forever in the UI, and the stale run
    held the lloco-gpu pool's only slot, so no pipeline ever started again. Unfinished runs of the
    lloco pools and their subflows become Crashed; scheduled runs and runs elsewhere stay."""
    from prefect import flow, task
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.states import Completed, Running, Scheduled

    from lloco.serving import CPU_POOL, GPU_POOL, crash_orphaned_runs, ensure_work_pools

    @flow
    def job() -> None: ...

    @task
    def step() -> None: ...

    ensure_work_pools(server.api_url)
    with SyncPrefectClient(server.api_url) as client:
        parent = client.create_flow_run(job, name="pipeline-x", state=Running(), work_pool_name=GPU_POOL)
        child = client.create_flow_run(job, name="compress-x", state=Running(), parent_task_run_id=client.create_task_run(step, parent.id, "0").id)
        keep = {
            "nightly": client.create_flow_run(job, name="nightly", state=Scheduled(), work_pool_name=GPU_POOL),
            "done": client.create_flow_run(job, name="done", state=Completed(), work_pool_name=CPU_POOL),
            "elsewhere": client.create_flow_run(job, name="elsewhere", state=Running()),
        }
        assert sorted(crash_orphaned_runs(server.api_url, "lloco serve was stopped")) == ["compress-x", "pipeline-x"]
        for run in (parent, child):
            state = client.read_flow_run(run.id).state
            assert state.type.value == "CRASHED" and state.message == "lloco serve was stopped"
        assert {name: client.read_flow_run(run.id).state.type.value for name, run in keep.items()} == {"nightly": "SCHEDULED", "done": "COMPLETED", "elsewhere": "RUNNING"}
    assert crash_orphaned_runs(server.api_url, "again") == []


def test_context_manager_stops_server(tmp_path: Path) -> None:
    srv = LocalPrefectServer(tmp_path / "home")
    with srv:
        assert srv.health()
        pid = srv.pid
        assert pid is not None
        rss = _rss_mib(pid)
        t_exit = time.monotonic()
    stopped = time.monotonic() - t_exit
    t0 = time.monotonic()
    srv.stop()  # second stop is a no-op
    assert time.monotonic() - t0 < 1
    assert not srv.running
    assert not _group_alive(pid)
    assert port_is_free(srv.port)
    assert not srv.health()
    print(f"\n[prefect_local] context server start {srv.start_seconds:.1f} s, RSS {rss:.0f} MiB, "
          f"stop {stopped:.1f} s (exit {srv.proc.returncode if srv.proc else None})")


def test_stop_process_sends_second_term_then_kill(tmp_path: Path) -> None:
    """A child that ignores SIGTERM is killed at the timeout, with its group."""
    import subprocess
    import sys

    code = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, start_new_session=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    t0 = time.monotonic()
    rc = stop_process(proc, timeout=2, second_term_after=0.5)
    assert rc == -signal.SIGKILL
    assert 1.5 < time.monotonic() - t0 < 10
    assert not _group_alive(proc.pid)
