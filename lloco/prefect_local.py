"""Run a real local Prefect server and process workers as child processes.

Tests and the ``lloco serve`` command use this instead of ``prefect_test_harness`` because
deployments and workers need a real server on a real port. Each server gets its own
``PREFECT_HOME`` (SQLite database, profiles, logs), a port checked free before start (so we
never talk to a server we did not start), and every child runs in its own session so that it
is stopped by process group and nothing outlives the caller. A `Reaper` extends that to a caller
killed by SIGKILL: its watchdog stops the registered children when the caller dies.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

__all__ = [
    "LocalPrefectServer",
    "PrefectLocalError",
    "Reaper",
    "free_port",
    "port_is_free",
    "prefect_executable",
    "run_cli",
    "start_worker",
    "stop_process",
]

HOST = "127.0.0.1"

# Inherited PREFECT_* variables are dropped: a stray PREFECT_API_URL, PREFECT_PROFILE or
# database URL would point the children at another server or database.
_DROP_PREFIX = "PREFECT_"

# Keeps the `prefect` CLI from prompting or wrapping when run without a terminal.
_CLI_ENV = {
    "PREFECT_CLI_PROMPT": "false",
    "PREFECT_CLI_COLORS": "false",
    "PREFECT_CLI_WRAP_LINES": "false",
    "COLUMNS": "200",
}


class PrefectLocalError(RuntimeError):
    """A local server, worker or CLI call failed; the message carries the log or output tail."""


_PR_SET_PDEATHSIG = 1


def _terminate_with_parent() -> None:
    """In a child before exec (Linux): SIGTERM when the parent dies, even by SIGKILL."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the Reaper still covers long-lived children
        pass


class Reaper:
    """A watchdog (`python -m lloco.reaper`) that stops registered children and their
    descendants when this process dies, even by SIGKILL (see lloco/reaper.py).

    `watch(pid)` right after starting a child, `forget(pid)` once it is stopped, `close()` on a
    clean shutdown. Without the watchdog a SIGKILLed `lloco serve` left its server and workers
    running.
    """

    def __init__(self) -> None:
        read, self._write = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "lloco.reaper", str(read)], pass_fds=(read,), stdin=subprocess.DEVNULL, start_new_session=True,
            )
        finally:
            os.close(read)

    def _send(self, line: str) -> None:
        try:
            os.write(self._write, (line + "\n").encode())
        except OSError:  # the watchdog is gone: nothing more it can do for us
            pass

    def watch(self, pid: int) -> None:
        try:
            import psutil

            self._send(f"+{pid} {psutil.Process(pid).create_time()!r}")
        except Exception:  # already exited: nothing to watch
            pass

    def forget(self, pid: int) -> None:
        self._send(f"-{pid}")

    def close(self) -> None:
        """Clean shutdown: the children are stopped; the watchdog exits without acting."""
        self._send("exit")
        try:
            os.close(self._write)
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def port_is_free(port: int) -> bool:
    """True if nothing listens on 127.0.0.1:port and we could bind it (like uvicorn will)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        if s.connect_ex((HOST, port)) == 0:
            return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def prefect_executable() -> Path:
    """The ``prefect`` script of the running interpreter's environment (not whatever is on PATH)."""
    exe = Path(sys.executable).parent / ("prefect.exe" if os.name == "nt" else "prefect")
    if not exe.is_file():
        raise PrefectLocalError(
            f"no prefect executable next to {sys.executable} (expected {exe}); "
            "install prefect into this environment"
        )
    return exe


def _tail(path: Path, n_bytes: int = 4000) -> str:
    """Last bytes of a log file, for error messages."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - n_bytes))
            return f.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"


def _signal_group(proc: subprocess.Popen[bytes] | subprocess.Popen[str], sig: int) -> None:
    """Signal the child's process group if it leads one (start_new_session), else the child."""
    try:
        if os.name != "nt" and os.getpgid(proc.pid) == proc.pid:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_process(
    proc: subprocess.Popen[bytes] | subprocess.Popen[str],
    timeout: float = 15.0,
    *,
    second_term_after: float = 5.0,
) -> int | None:
    """Stop a child started with ``start_new_session=True`` and reap it; return its exit code.

    SIGTERM to the group; a second SIGTERM after ``second_term_after`` s (a Prefect worker
    may ignore the first while it shuts down); SIGKILL at ``timeout``. Group members left
    after the leader exits are killed too, so no flow-run or server child survives.
    """
    if proc.poll() is None:
        deadline = time.monotonic() + timeout
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=max(0.0, min(second_term_after, timeout)))
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait(timeout=10)
    # The leader is reaped; its pgid cannot be reused while members remain, so this only
    # reaches leftovers of this group (ProcessLookupError when there are none).
    if os.name != "nt":
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return proc.returncode


class LocalPrefectServer:
    """A ``prefect server start`` child on 127.0.0.1 with its own PREFECT_HOME.

    Use as a context manager, or call ``start()`` / ``stop()``. ``env()`` is the environment
    every client of this server (workers, CLI calls, flow scripts) should run with.
    """

    def __init__(
        self,
        home: Path,
        port: int | None = None,
        *,
        extra_env: Mapping[str, str] | None = None,
        reaper: Reaper | None = None,
    ) -> None:
        self.home = Path(home).resolve()
        self.port = port if port is not None else free_port()
        self.extra_env = dict(extra_env or {})
        self.reaper = reaper
        self.proc: subprocess.Popen[bytes] | None = None
        self.start_seconds: float | None = None

    @property
    def api_url(self) -> str:
        """The PREFECT_API_URL of this server."""
        return f"http://{HOST}:{self.port}/api"

    @property
    def ui_url(self) -> str:
        """The address of the UI in a browser."""
        return f"http://{HOST}:{self.port}"

    @property
    def log_path(self) -> Path:
        """Where the server's stdout and stderr go."""
        return self.home / "server.log"

    @property
    def pid(self) -> int | None:
        """PID (and process group id) of the server, or None before start."""
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        """True while the server process we started is alive."""
        return self.proc is not None and self.proc.poll() is None

    def env(self) -> dict[str, str]:
        """os.environ without inherited PREFECT_* plus the settings that bind clients to this server."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(_DROP_PREFIX)}
        no_proxy = ",".join(
            x for x in (os.environ.get("NO_PROXY", ""), "127.0.0.1,localhost") if x
        )
        env.update(
            {
                "PREFECT_HOME": str(self.home),
                "PREFECT_API_URL": self.api_url,
                # Set before the server starts, or the UI points the browser at port 4200.
                "PREFECT_UI_API_URL": self.api_url,
                "PREFECT_SERVER_UI_API_URL": self.api_url,
                "PREFECT_SERVER_API_HOST": HOST,
                "PREFECT_SERVER_API_PORT": str(self.port),
                # Analytics on a local server produced "database is locked" tracebacks.
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
                "DO_NOT_TRACK": "1",
                # Workers poll every second instead of 10 s: runs start promptly in tests.
                "PREFECT_WORKER_QUERY_SECONDS": "1",
                "PREFECT_LOGGING_LEVEL": "INFO",
                "PYTHONUNBUFFERED": "1",
                # Requests to our own loopback server must never go through a proxy.
                "NO_PROXY": no_proxy,
                "no_proxy": no_proxy,
            }
        )
        env.update(self.extra_env)
        return env

    def health(self, timeout: float = 2.0) -> bool:
        """True if GET /api/health answers 200 (no proxy, short timeout)."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(f"{self.api_url}/health", timeout=timeout) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def start(self, timeout: float = 60.0) -> LocalPrefectServer:
        """Start the server and wait until /api/health answers; raise with the log tail if not."""
        if self.running:
            raise PrefectLocalError(f"server already running (pid {self.pid})")
        if not port_is_free(self.port):
            raise PrefectLocalError(
                f"port {HOST}:{self.port} is in use; refusing to use a server this process "
                "did not start"
            )
        self.home.mkdir(parents=True, exist_ok=True)
        cmd = [str(prefect_executable()), "server", "start", "--host", HOST, "--port", str(self.port)]
        t0 = time.monotonic()
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                cmd,
                env=self.env(),
                # The home holds no prefect.toml or .env, so cwd settings cannot leak in.
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if self.reaper is not None:
            self.reaper.watch(self.proc.pid)
        deadline = t0 + timeout
        while True:
            code = self.proc.poll()
            if code is not None:
                raise PrefectLocalError(
                    f"prefect server exited with code {code} before it was healthy; "
                    f"log {self.log_path}:\n{_tail(self.log_path)}"
                )
            if self.health():
                break
            if time.monotonic() > deadline:
                self.stop()
                raise PrefectLocalError(
                    f"prefect server on port {self.port} not healthy after {timeout:.0f} s; "
                    f"log {self.log_path}:\n{_tail(self.log_path)}"
                )
            time.sleep(0.25)
        self.start_seconds = time.monotonic() - t0
        return self

    def stop(self, timeout: float = 15.0) -> int | None:
        """Stop the server (SIGTERM to its group, then SIGKILL) and reap it; safe to call twice."""
        if self.proc is None:
            return None
        code = stop_process(self.proc, timeout=timeout)
        if self.reaper is not None:
            self.reaper.forget(self.proc.pid)
        return code

    def __enter__(self) -> LocalPrefectServer:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _require_running(server: LocalPrefectServer) -> None:
    if not server.running:
        raise PrefectLocalError("the local Prefect server is not running; call start() first")


def start_worker(
    server: LocalPrefectServer,
    pool: str,
    log_path: Path,
    extra_env: Mapping[str, str] | None = None,
    *,
    name: str | None = None,
    cwd: Path | None = None,
    reaper: Reaper | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``prefect worker start --pool POOL --type process`` against ``server``.

    Runs in its own session, output to ``log_path``; stop it with ``stop_process``. It does
    not wait for the worker to register: poll ``/api/work_pools/POOL/workers/filter``.
    """
    _require_running(server)
    cmd = [str(prefect_executable()), "worker", "start", "--pool", pool, "--type", "process"]
    if name is not None:
        cmd += ["--name", name]
    env = server.env()
    env.update(_CLI_ENV)
    env.update(extra_env or {})
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    if reaper is not None:
        reaper.watch(proc.pid)
    return proc


def run_cli(
    server: LocalPrefectServer,
    *args: str,
    cwd: Path | None = None,
    timeout: float = 120.0,
    extra_env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``prefect ARGS`` against ``server`` (no prompts); raise with its output on failure."""
    _require_running(server)
    cmd = [str(prefect_executable()), *args]
    env = server.env()
    env.update(_CLI_ENV)
    env.update(extra_env or {})
    try:
        result = subprocess.run(
            cmd,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            preexec_fn=_terminate_with_parent if sys.platform == "linux" else None,
        )
    except subprocess.TimeoutExpired as exc:
        raise PrefectLocalError(
            f"`prefect {' '.join(args)}` timed out after {timeout:.0f} s\n"
            f"stdout:\n{exc.stdout!s}\nstderr:\n{exc.stderr!s}"
        ) from exc
    if result.returncode != 0:
        raise PrefectLocalError(
            f"`prefect {' '.join(args)}` exited with code {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result
