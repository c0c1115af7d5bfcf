"""lloco serve [--port 4200] [--home DIR] [--gpus N] [--no-worker]

One command for a local control room: a Prefect server on 127.0.0.1, the work pools and the `gpu`
limit, a worker per pool, and the deployments of deployments/prefect.yaml. It prints the UI address
and waits; Ctrl-C (or SIGTERM) stops the workers and the server by PID. Even if `lloco serve` is
killed outright (SIGKILL), a watchdog (lloco/reaper.py) stops everything it started.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from lloco_core.errors import InputError

DEFAULT_HOME = Path("~/.lloco/prefect")
RETRY = False  # a server, not a storage operation: never re-run it on an error


def _gpu_count() -> int:
    import torch

    return max(1, torch.cuda.device_count())


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> dict[str, Any]:
    from lloco.prefect_local import LocalPrefectServer, Reaper, port_is_free, start_worker, stop_process

    if not port_is_free(args.port):
        raise InputError(f"port 127.0.0.1:{args.port} is in use: pick another with --port (lloco never attaches to a server it did not start)")
    home = args.home.expanduser().resolve()
    gpus = args.gpus or _gpu_count()
    from lloco.serving import CPU_POOL, GPU_POOL, REPO_ROOT, crash_orphaned_runs, deploy_all, ensure_work_pools

    reaper = Reaper()
    server = LocalPrefectServer(home, args.port, reaper=reaper)
    workers = []
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    started = time.monotonic()
    try:
        print(f"starting Prefect server on {server.ui_url} (PREFECT_HOME={home}) ...", file=sys.stderr, flush=True)
        server.start(timeout=180)
        ensure_work_pools(server.api_url, gpus)
        if not args.no_worker:
            _report_crashed(crash_orphaned_runs(server.api_url, "no worker runs it any more: the lloco serve that ran it was stopped"))
            for pool in (GPU_POOL, CPU_POOL):
                workers.append(start_worker(server, pool, home / f"worker-{pool}.log", cwd=REPO_ROOT, reaper=reaper))
        print("registering the deployments of deployments/prefect.yaml ...", file=sys.stderr, flush=True)
        deploy_all(server, REPO_ROOT)
        print(
            f"\nPrefect UI: {server.ui_url}\n"
            f"  deployments: pipeline/pipeline, backfill/backfill, nightly/compress-nightly (02:00 UTC)\n"
            f"  run one from the UI (Deployments > pipeline > Run > Custom run) or from a shell:\n"
            f"    PREFECT_API_URL={server.api_url} prefect deployment run pipeline/pipeline --params '{{\"config\": {{\"corpus\": \"sample\", \"sources\": [\"lloco_core/data/sample_corpus\"], \"model\": \"PATH\"}}}}'\n"
            f"  workers: {', '.join(f'{pool} (pid {w.pid})' for pool, w in zip((GPU_POOL, CPU_POOL), workers)) or 'none'}; server pid {server.pid}; logs in {home}\n"
            "Ctrl-C stops everything.",
            file=sys.stderr,
            flush=True,
        )
        started = time.monotonic()
        while server.running and all(w.poll() is None for w in workers):
            time.sleep(1)
        print("a worker or the server exited; stopping", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        for worker in workers:
            stop_process(worker)
            reaper.forget(worker.pid)
        if workers and server.running:
            try:
                _report_crashed(crash_orphaned_runs(server.api_url, "lloco serve was stopped while this run was in progress"))
            except Exception as error:  # never keep the server up because the bookkeeping failed
                print(f"could not mark interrupted runs as crashed: {error}", file=sys.stderr, flush=True)
        server.stop()
        reaper.close()
        signal.signal(signal.SIGTERM, previous)
        print("stopped workers and server", file=sys.stderr, flush=True)
    return {"ui": server.ui_url, "api": server.api_url, "home": str(home), "served_s": round(time.monotonic() - started, 1), "gpus": gpus}


def _report_crashed(names: list[str]) -> None:
    if names:
        print(f"marked {len(names)} interrupted flow run(s) Crashed (retry them from the UI): {', '.join(names)}", file=sys.stderr, flush=True)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="start a local Prefect server with the lloco deployments and workers (UI on 127.0.0.1)")
    parser.add_argument("--port", type=int, default=4200, metavar="N", help="port of the server and UI on 127.0.0.1 (default: 4200)")
    parser.add_argument("--home", type=Path, default=DEFAULT_HOME, metavar="DIR", help=f"PREFECT_HOME: database, logs (default: {DEFAULT_HOME})")
    parser.add_argument("--gpus", type=int, default=None, metavar="N", help="GPU runs at once: the lloco-gpu pool limit and `gpu` slots (default: CUDA devices, at least 1)")
    parser.add_argument("--no-worker", action="store_true", dest="no_worker", help="register everything but start no worker, for workers that run elsewhere (default: off)")
    parser.set_defaults(handler=run)
