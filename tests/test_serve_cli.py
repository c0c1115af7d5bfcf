"""`lloco serve` refuses a port someone else listens on (it never attaches to a server it did not
start), and leaves no process behind when it is killed outright. (The full start-up path is the
one tests/prefect_ops exercise through lloco.serving.set_up.)"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from lloco.cli import main
from lloco.prefect_local import free_port


def test_serve_refuses_a_busy_port(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
    assert f"port 127.0.0.1:{port} is in use" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_nothing_survives_a_sigkill_of_lloco_serve(tmp_path: Path) -> None:
    """SIGKILL gives `lloco serve` no chance to clean up: its watchdog must stop the Prefect server,
    the workers and everything under them (9 orphaned processes after 3 such kills before)."""
    script = Path(sys.executable).parent / "lloco"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "lloco.cli"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")} | {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    serve = subprocess.Popen([*command, "serve", "--port", str(free_port()), "--home", str(tmp_path / "home"), "--gpus", "1"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started: dict[int, psutil.Process] = {}
    try:
        deadline = time.monotonic() + 180
        while sum("worker" in " ".join(p.cmdline()) for p in started.values() if _alive(p)) < 2:
            assert serve.poll() is None, "lloco serve exited on its own"
            assert time.monotonic() < deadline, "no workers within 180 s"
            for child in psutil.Process(serve.pid).children(recursive=True):
                started.setdefault(child.pid, child)
            time.sleep(0.2)
        for child in psutil.Process(serve.pid).children(recursive=True):  # the whole tree as it stands
            started.setdefault(child.pid, child)
        serve.kill()
        serve.wait(timeout=10)
        killed = time.monotonic()
        while any(_alive(p) for p in started.values()) and time.monotonic() - killed < 10:
            time.sleep(0.2)
        survivors = [" ".join(p.cmdline()) for p in started.values() if _alive(p)]
        assert not survivors, f"still alive 10 s after SIGKILL of lloco serve: {survivors}"
    finally:
        if serve.poll() is None:
            serve.kill()
        for process in started.values():
            if _alive(process):
                process.kill()


def _alive(process: psutil.Process) -> bool:
    """Running and not a zombie (a reparented child may wait for an init that never reaps it)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
