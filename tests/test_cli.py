"""`lloco compress` as users run it, in a real process: SIGKILLed after its first commit and run
again, it ends with exactly the rows of an uninterrupted run (none missing, none duplicated), and
its last stdout line is the documented JSON summary."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import make_text
from tests.fixtures_compress import commit_records, env_clean, run_cli, write_docs  # noqa: F401

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("env_clean")]
N_DOCS = 24
SUMMARY_KEYS = {"documents_compressed", "documents_skipped", "segments_written", "shards_committed", "encoder_key", "store"}


def lloco_command() -> list[str]:
    script = Path(sys.executable).parent / "lloco"
    return [str(script)] if script.exists() else [sys.executable, "-m", "lloco.cli"]


def subprocess_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LLOCO_ROOT", "AWS_ENDPOINT_URL")}
    return {**env, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **extra}


def committed(folder: Path) -> list[Path]:
    """Commit records only: a `.tmp-*` file is a record still being written (invisible to readers)."""
    return sorted(p for p in folder.glob("*.json") if not p.name.startswith(".")) if folder.is_dir() else []


def export(root: str, out: Path) -> pq.ParquetFile:
    rc, _, err, _ = run_cli("export", "--corpus", "c", "--root", root, "--out", str(out))
    assert rc == 0, err
    return pq.read_table(out)


def test_killed_compress_resumes_to_exactly_the_uninterrupted_rows(tiny_model: Path, tmp_path: Path) -> None:
    source = write_docs(tmp_path / "src", {f"doc{i:02d}": make_text(i, 100 + 3 * i) for i in range(N_DOCS)})
    compress_args = ["--model", str(tiny_model), "--device", "cpu", "--shard-size", "1", "--batch-size", "4"]

    # the reference: one uninterrupted run on its own root
    reference_root = str(tmp_path / "reference")
    assert run_cli("ingest", str(source), "--corpus", "c", "--root", reference_root)[0] == 0
    rc, _, err, reference = run_cli("compress", "--corpus", "c", "--root", reference_root, *compress_args)
    assert rc == 0, err
    assert reference["shards_committed"] == N_DOCS
    want = export(reference_root, tmp_path / "reference.parquet")

    # the interrupted run: a real process, SIGKILLed as soon as its first commit record appears
    root = str(tmp_path / "store")
    assert run_cli("ingest", str(source), "--corpus", "c", "--root", root)[0] == 0
    commits = Path(root) / "c" / "embeddings" / reference["encoder_key"] / "_commits"
    proc = subprocess.Popen(
        [*lloco_command(), "compress", "--corpus", "c", "--root", root, *compress_args],
        env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not committed(commits):
            assert proc.poll() is None, f"compress exited before its first commit: {proc.communicate()}"
            assert time.monotonic() < deadline, "no commit within 120 s"
            time.sleep(0.002)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        stdout, _ = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "it was killed, it did not finish"
    assert stdout == b"", "a killed run prints no summary"
    done = len(committed(commits))
    assert 1 <= done < N_DOCS, f"killed mid-way: {done} of {N_DOCS} shards committed"
    print(f"killed after {done} of {N_DOCS} shard commits")

    # the store is at its last commit: readers see exactly the committed documents, whole
    partial = export(root, tmp_path / "partial.parquet")
    assert len({d for d in partial["doc_id"].to_pylist()}) == done
    assert partial.to_pylist() == [r for r in want.to_pylist() if r["doc_id"] in set(partial["doc_id"].to_pylist())]

    # re-run, as a process again, with the root from $LLOCO_ROOT this time
    rerun = subprocess.run(
        [*lloco_command(), "compress", "--corpus", "c", *compress_args],
        env=subprocess_env(LLOCO_ROOT=root), capture_output=True, text=True, timeout=300,
    )
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert SUMMARY_KEYS <= set(summary)
    assert summary["encoder_key"] == reference["encoder_key"]
    assert summary["store"] == str(commits.parent)
    assert (summary["documents_compressed"], summary["documents_skipped"], summary["shards_committed"]) == (N_DOCS - done, done, N_DOCS - done)
    progress = [json.loads(line.removeprefix("lloco-progress ")) for line in rerun.stderr.splitlines() if line.startswith("lloco-progress ")]
    assert progress[-1]["done"] == progress[-1]["total"] == N_DOCS - done, "progress counts only the documents left to compress"
    assert progress[-1]["shards"] == f"{N_DOCS - done}/{N_DOCS - done}"

    got = export(root, tmp_path / "resumed.parquet")
    keys = list(zip(got["doc_id"].to_pylist(), got["segment_index"].to_pylist()))
    assert len(keys) == len(set(keys)), "no duplicated segments"
    assert got.equals(want), "exactly the rows (and schema) of the uninterrupted run"
    assert len(commit_records(Path(root) / "c" / "embeddings")) == N_DOCS
    assert len(list(commits.parent.glob("shards/*.parquet"))) == N_DOCS, "the orphan of the killed shard was overwritten, not duplicated"
