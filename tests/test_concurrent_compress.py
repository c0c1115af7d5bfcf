"""Two `lloco compress` processes on one corpus at once, with different shard sizes (the issue's
case: both stored the same 56 document versions). With leases they split the documents: every
version is encoded and stored once, both did part of the work, and the export equals that of a
single run."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import make_text
from tests.fixtures_compress import env_clean, run_cli, write_docs  # noqa: F401
from tests.test_cli import lloco_command, subprocess_env

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("env_clean")]
N_DOCS = 56


def test_two_concurrent_compresses_split_the_work(tiny_model: Path, tmp_path: Path) -> None:
    source = write_docs(tmp_path / "src", {f"doc{i:02d}": make_text(500 + i, 120) for i in range(N_DOCS)})
    common = ["--model", str(tiny_model), "--device", "cpu", "--batch-size", "1"]
    roots = {"single": str(tmp_path / "single"), "shared": str(tmp_path / "shared")}
    for root in roots.values():
        assert run_cli("ingest", str(source), "--corpus", "c", "--root", root)[0] == 0

    procs = [
        subprocess.Popen([*lloco_command(), "compress", "--corpus", "c", "--root", roots["shared"], *common, "--shard-size", size],
                         env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for size in ("3", "5")
    ]
    deadline = time.monotonic() + 600
    outputs = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=max(1, deadline - time.monotonic()))
        assert proc.returncode == 0, stderr
        outputs.append(json.loads(stdout.strip().splitlines()[-1]))
    rc, _, err, single = run_cli("compress", "--corpus", "c", "--root", roots["single"], *common, "--shard-size", "4")  # the reference
    assert rc == 0, err

    done = [o["documents_compressed"] for o in outputs]
    assert sum(done) == N_DOCS and min(done) > 0, f"each run encoded part of the corpus, together all of it once: {done}"
    shards = sorted((Path(roots["shared"]) / "c" / "embeddings").rglob("shards/*.parquet"))
    versions = [pair for shard in shards for pair in set(zip(*pq.read_table(shard, columns=["doc_id", "doc_sha256"]).to_pydict().values()))]
    assert len(versions) == len(set(versions)) == N_DOCS, "no document version stored twice"

    exports = {}
    for name, root in roots.items():
        rc, _, err, _ = run_cli("export", "--corpus", "c", "--root", root, "--out", str(tmp_path / f"{name}.parquet"))
        assert rc == 0, err
        exports[name] = pq.read_table(tmp_path / f"{name}.parquet")
    assert exports["shared"].equals(exports["single"])
    assert single["documents_compressed"] == N_DOCS
