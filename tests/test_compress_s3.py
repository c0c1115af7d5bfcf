"""Real object storage: ingest, compress and export with root s3://bucket/prefix on a SeaweedFS
server this test starts on 127.0.0.1 give exactly the rows of the same run on a local root."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import s3fs

from tests.conftest import make_text
from tests.fixtures_compress import env_clean, run_cli, write_docs  # noqa: F401
from tests.s3server import SeaweedS3, _pid_alive

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("env_clean")]


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """One server for this module, on ports it chose; each test uses its own bucket."""
    server = SeaweedS3(tmp_path_factory.mktemp("weed")).start()
    pid = server.pid
    try:
        yield server
    finally:
        server.stop()  # SIGTERM then SIGKILL to this PID's process group only
        assert not _pid_alive(pid)


def run_all(source: Path, root: str, model: Path, out: str, *store_args: str) -> tuple[dict, dict, dict]:
    results = []
    for argv in (
        ("ingest", str(source)),
        ("compress", "--model", str(model), "--device", "cpu", "--shard-size", "2", "--batch-size", "2"),
        ("export", "--out", out),
    ):
        rc, _, err, result = run_cli(*argv, "--corpus", "c", "--root", root, *store_args)
        assert rc == 0, f"{argv[0]}: {err}"
        results.append(result)
    return tuple(results)


def test_compress_on_s3_equals_local(s3: SeaweedS3, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = write_docs(tmp_path / "src", {f"doc{i}": make_text(i, 30 + 40 * i) for i in range(5)})
    _, local, _ = run_all(source, str(tmp_path / "local"), tiny_model, str(tmp_path / "local.parquet"))

    s3.make_bucket("bucket")
    for name, value in s3.env().items():  # endpoint and keys through the standard variables
        monkeypatch.setenv(name, value)
    ingested, remote, exported = run_all(source, "s3://bucket/prefix", tiny_model, "s3://bucket/out/all.parquet")
    assert ingested["documents_added"] == 5
    assert remote["encoder_key"] == local["encoder_key"]
    assert remote["store"] == f"s3://bucket/prefix/c/embeddings/{local['encoder_key']}"
    for key in ("documents_compressed", "segments_written", "shards_committed"):
        assert remote[key] == local[key]
    assert exported["rows"] == local["segments_written"]

    objects = [o["Key"] for o in s3.client().list_objects_v2(Bucket="bucket", Prefix="prefix/")["Contents"]]
    assert any(k.startswith("prefix/c/documents/_commits/") for k in objects)
    assert sum(k.startswith(f"prefix/c/embeddings/{local['encoder_key']}/shards/") for k in objects) == 3
    assert sum(k.startswith(f"prefix/c/embeddings/{local['encoder_key']}/_commits/") for k in objects) == 3

    body = s3.client().get_object(Bucket="bucket", Key="out/all.parquet")["Body"].read()
    (tmp_path / "from-s3.parquet").write_bytes(body)
    assert pq.read_table(tmp_path / "from-s3.parquet").equals(pq.read_table(tmp_path / "local.parquet"))

    # endpoint from config (--endpoint-url) instead of the environment: same store, nothing to redo
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    rc, _, err, again = run_cli(
        "compress", "--corpus", "c", "--root", "s3://bucket/prefix", "--endpoint-url", s3.endpoint_url, "--model", str(tiny_model), "--device", "cpu"
    )
    assert rc == 0, err
    assert (again["documents_compressed"], again["documents_skipped"]) == (0, 5)


def test_wrong_keys_fail_clearly(s3: SeaweedS3, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s3.make_bucket("keys")
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-" + s3.secret_key)
    source = write_docs(tmp_path / "src", {"a": make_text(1, 20)})
    s3fs.S3FileSystem.clear_instance_cache()  # fsspec reuses a filesystem (and its keys) per endpoint
    # s3fs maps the server's SignatureDoesNotMatch to PermissionError; the CLI says so and exits 2
    rc, _, err, _ = run_cli("ingest", str(source), "--corpus", "c", "--root", "s3://keys/prefix")
    assert rc == 2 and "PermissionError" in err and "signature" in err.lower()
    # a HEAD request's refusal carries no reason (`Forbidden`): the line names the store and what to check
    rc, _, err, _ = run_cli("status", "--root", "s3://keys/prefix")
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "access to s3://keys/prefix refused: check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY" in err, err
    assert "Contents" not in s3.client().list_objects_v2(Bucket="keys")
