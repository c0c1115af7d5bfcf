"""Progress and noise: compress reports documents and tokens per second within its shard as
`lloco-progress` lines when asked (or when stderr is not a terminal), nothing with
`--progress none`; finetune steps carry the loss; third-party debug logs stay off unless verbose."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

from lloco.commands._progress import PREFIX, Progress
from lloco.commands.finetune import FinetuneProgress
from tests.conftest import make_text
from tests.fixtures_compress import run_cli, write_docs


def progress_lines(stderr: str) -> list[dict]:
    return [json.loads(line.removeprefix(PREFIX)) for line in stderr.splitlines() if line.startswith(PREFIX)]


def test_compress_reports_documents_and_tokens_per_second(tmp_path: Path, tiny_model: Path) -> None:
    root = str(tmp_path / "store")
    source = write_docs(tmp_path / "src", {f"d{i}": make_text(i, 120) for i in range(3)})
    assert run_cli("ingest", str(source), "--corpus", "c", "--root", root)[0] == 0
    rc, _, err, summary = run_cli("compress", "--corpus", "c", "--root", root, "--model", str(tiny_model), "--device", "cpu", "--shard-size", "2", "--batch-size", "1", "--progress", "json")
    assert rc == 0, err
    lines = progress_lines(err)
    assert lines, err
    last = lines[-1]
    assert last["done"] == last["total"] == 3 and last["unit"] == "doc" and last["shards"] == "2/2"
    assert last["shard_docs_per_s"] > 0 and last["shard_tokens_per_s"] > 0
    assert "Loading weights" not in err, "third-party bars are off unless --verbose"
    assert summary is not None and summary["documents_compressed"] == 3

    assert run_cli("ingest", str(write_docs(tmp_path / "more", {"d9": make_text(9, 80)})), "--corpus", "c", "--root", root)[0] == 0
    rc, _, err, _ = run_cli("compress", "--corpus", "c", "--root", root, "--model", str(tiny_model), "--device", "cpu", "--progress", "none")
    assert rc == 0 and PREFIX not in err, err


def test_finetune_progress_throttles_json_and_keeps_the_last_step() -> None:
    stream = io.StringIO()
    progress = FinetuneProgress(Progress("json", stream, interval=3600))
    for step in range(1, 91):
        progress({"event": "step", "step": step, "total_steps": 90, "loss": 1.0 / step})
    progress({"event": "checkpoint", "step": 90, "uri": "s3://b/ckpt"})
    progress.close()
    lines = progress_lines(stream.getvalue())
    steps = [line for line in lines if "done" in line]
    assert len(steps) == 2, "one line a second at most (here: the first and the last), not 90"
    assert steps[-1]["done"] == steps[-1]["total"] == 90 and steps[-1]["loss"] == round(1 / 90, 3)
    assert any(line.get("event") == "checkpoint" and "checkpoint committed at step 90" in line["message"] for line in lines)


def test_auto_mode_writes_json_lines_when_stderr_is_not_a_terminal() -> None:
    assert Progress("auto", io.StringIO()).mode == "json"


def test_third_party_debug_logs_are_off_unless_verbose() -> None:
    code = (
        "import logging, sys\n"
        "from lloco_core.logs import quiet_third_party\n"
        "quiet_third_party(verbose=sys.argv[1] == 'verbose')\n"
        "logging.basicConfig(level=logging.DEBUG, stream=sys.stdout)\n"
        "import bm25s\n"
        "bm25s.BM25().index(bm25s.tokenize(['a river castle', 'a storm'], show_progress=False), show_progress=False)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop("LLOCO_VERBOSE", None)
    quiet, verbose = (subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True, env=env, check=True).stdout for mode in ("quiet", "verbose"))
    assert "Building index" in verbose, "the check must see bm25s's debug log when verbose"
    assert "Building index" not in quiet


def test_hub_retry_warnings_are_off_unless_verbose() -> None:
    """A hub id with no network: huggingface_hub retried 5 times with a stderr line each before lloco's one-line error."""
    code = (
        "import socket, sys\n"
        "from lloco_core.logs import quiet_third_party\n"
        "quiet_third_party(verbose=sys.argv[1] == 'verbose')\n"
        "from huggingface_hub.utils import http_backoff\n"
        "s = socket.socket(); s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]; s.close()\n"
        "try:\n"
        "    http_backoff('GET', f'http://127.0.0.1:{port}/', max_retries=1, base_wait_time=0.01, max_wait_time=0.01)\n"
        "except Exception:\n"
        "    pass\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    for name in ("LLOCO_VERBOSE", "HF_HUB_VERBOSITY", "HF_HUB_OFFLINE"):  # offline mode refuses before any retry; the port is local
        env.pop(name, None)
    quiet, verbose = (subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True, env=env, check=True).stderr for mode in ("quiet", "verbose"))
    assert "Retrying in" in verbose, "the check must see huggingface_hub's retry warning when verbose"
    assert "Retrying in" not in quiet
