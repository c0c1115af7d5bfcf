"""Real object storage (a SeaweedFS server this module starts on 127.0.0.1):
- ingest, compress, finetune, ask, evaluate and export with the endpoint given only by
  `--endpoint-url` (no AWS_ENDPOINT_URL): every connection and every name lookup of the process
  goes to that server, seen through Python's audit hooks (`socket.getaddrinfo`, `socket.connect`),
  with the QA file, the eval set, the adapter and the export all on S3 too;
- two rows of the corruption matrix on S3: a flipped shard and a truncated commit record are named,
  never returned, and restored exactly.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import s3fs

from tests.conftest import make_text
from tests.finetune_helpers import QA_LINES
from tests.fixtures_compress import env_clean, run_cli, write_docs  # noqa: F401
from tests.s3server import SeaweedS3
from tests.test_compress_s3 import s3  # noqa: F401 (the module's SeaweedFS fixture)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("env_clean")]
DOCS = {f"d{i}": make_text(200 + i, 40 + 20 * i) for i in range(4)}
_AUDIT: list[tuple[str, Any]] | None = None


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _AUDIT is not None and event in ("socket.getaddrinfo", "socket.connect"):
        _AUDIT.append((event, args[0] if event == "socket.getaddrinfo" else args[1]))


@pytest.fixture
def connections() -> Iterator[list[tuple[str, Any]]]:
    """Every name lookup and connect of this process while the test runs (threads included)."""
    global _AUDIT
    if not getattr(sys, "_lloco_audit_installed", False):
        sys.addaudithook(_audit)
        sys._lloco_audit_installed = True  # type: ignore[attr-defined]
    _AUDIT = []
    try:
        yield _AUDIT
    finally:
        _AUDIT = None


def keys_only(s3: SeaweedS3, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    s3fs.S3FileSystem.clear_instance_cache()


def put(s3: SeaweedS3, bucket: str, key: str, data: bytes) -> str:
    s3.client().put_object(Bucket=bucket, Key=key, Body=data)
    return f"s3://{bucket}/{key}"


def lloco(*argv: str, endpoint: str, root: str) -> tuple[int, str, dict[str, Any] | None]:
    rc, stdout, err, _ = run_cli(*argv, "--corpus", "c", "--root", root, "--endpoint-url", endpoint)
    lines = stdout.strip().splitlines()
    return rc, err, json.loads(lines[-1]) if lines and lines[-1].startswith("{") else None


def test_every_command_talks_only_to_the_configured_endpoint(s3: SeaweedS3, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, connections: list) -> None:
    s3.make_bucket("endpoint")
    keys_only(s3, monkeypatch)
    root, endpoint = "s3://endpoint/root", s3.endpoint_url
    qa = put(s3, "endpoint", "in/qa.jsonl", "".join(json.dumps({**line, "doc_id": f"d{i % 4}"}) + "\n" for i, line in enumerate(QA_LINES)).encode())
    bench = [{"_id": f"b{i}", "input": "Which tower?", "context": make_text(300 + i, 120), "answers": ["tower"], "dataset": "qasper"} for i in range(2)]
    bench_url = put(s3, "endpoint", "in/qasper.jsonl", "".join(json.dumps(r) + "\n" for r in bench).encode())
    model = ("--model", str(tiny_model), "--device", "cpu")
    steps = [
        ("ingest", str(write_docs(tmp_path / "src", DOCS))),
        ("compress", *model, "--shard-size", "2"),
        ("finetune", "--qa", qa, *model, "--max-steps", "1", "--output-key", "ad"),
        ("ask", "Which tower?", "--doc", "d1", "--device", "cpu", "--max-new-tokens", "3"),
        ("evaluate", bench_url, "--device", "cpu", "--max-new-tokens", "2", "--window", "384", "--systems", "no_context,lloco"),
        ("export", "--out", "s3://endpoint/out/all.parquet"),
    ]
    results = {}
    for argv in steps:
        rc, err, result = lloco(*argv, endpoint=endpoint, root=root)
        assert rc == 0, f"{argv[0]}: {err}"
        results[argv[0]] = result
    assert results["ask"]["adapter_key"] == "ad" and results["evaluate"]["adapter_key"] == "ad"
    assert results["export"]["rows"] > 0 and results["export"]["problems"] == []

    hosts = {args[0] if isinstance(args, tuple) else args for event, args in connections}
    assert hosts == {"127.0.0.1"}, f"connections to other endpoints: {sorted(map(str, hosts - {'127.0.0.1'}))}"
    ports = {args[1] for event, args in connections if event == "socket.connect" and isinstance(args, tuple)}
    assert ports == {s3.s3_port}, ports


def test_corruption_on_s3_is_named_never_returned_and_restored(s3: SeaweedS3, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s3.make_bucket("matrix")
    keys_only(s3, monkeypatch)
    root, endpoint = "s3://matrix/root", s3.endpoint_url
    compress = ("compress", "--model", str(tiny_model), "--device", "cpu", "--shard-size", "2")
    for argv in (("ingest", str(write_docs(tmp_path / "src", DOCS))), compress, ("export", "--out", str(tmp_path / "ref.parquet"))):
        assert lloco(*argv, endpoint=endpoint, root=root)[0] == 0
    reference = pq.read_table(tmp_path / "ref.parquet")
    client = s3.client()
    keys = [o["Key"] for o in client.list_objects_v2(Bucket="matrix", Prefix="root/c/embeddings/")["Contents"]]
    shard = min(k for k in keys if "/shards/" in k)
    record = max(k for k in keys if "/_commits/" in k)

    def check(fault_key: str, restore: list[tuple[str, ...]]) -> None:
        rc, err, result = lloco("export", "--out", str(tmp_path / "damaged.parquet"), endpoint=endpoint, root=root)
        assert rc == 0, err
        got = pq.read_table(tmp_path / "damaged.parquet").to_pylist()
        assert got and all(row in reference.to_pylist() for row in got) and len(got) < reference.num_rows
        assert f"matrix/{fault_key}" in {p["path"].removeprefix("s3://") for p in result["problems"]}
        rc, _, report = lloco("verify", endpoint=endpoint, root=root)
        assert rc == 1 and any(f["path"].endswith(fault_key) for f in report["files"] if f["status"] == "problem")
        for argv in restore:
            rc, err, _ = lloco(*argv, endpoint=endpoint, root=root)
            assert rc == 0, err
        assert lloco("export", "--out", str(tmp_path / "restored.parquet"), endpoint=endpoint, root=root)[0] == 0
        assert pq.read_table(tmp_path / "restored.parquet").equals(reference)
        assert lloco("verify", endpoint=endpoint, root=root)[0] == 0

    body = bytearray(client.get_object(Bucket="matrix", Key=shard)["Body"].read())
    body[len(body) // 2 : len(body) // 2 + 64] = bytes(b ^ 0x5A for b in body[len(body) // 2 : len(body) // 2 + 64])
    client.put_object(Bucket="matrix", Key=shard, Body=bytes(body))
    check(shard, [("verify", "--repair"), compress])

    body = client.get_object(Bucket="matrix", Key=record)["Body"].read()
    client.put_object(Bucket="matrix", Key=record, Body=body[:30])
    check(record, [compress])
    assert isinstance(reference, pa.Table)
