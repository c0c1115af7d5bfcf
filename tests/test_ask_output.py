"""`lloco ask` output a person can read: on a corpus of 6 documents of about 5,000 words, the last
JSON line stays under 4 KB by default (a corpus-wide question reads the top-k segments, and the
documents read are listed as segment ranges); `--verbose` adds every segment and token id."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lloco.cli import main
from lloco_core.config import CompressConfig, IngestConfig
from lloco_core.model.compress import compress
from lloco_core.store.documents import ingest
from tests.conftest import make_text


@pytest.fixture(scope="module")
def big_corpus(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> str:
    """Six documents of ~5,000 words each, compressed at the paper's 1,536 tokens per segment."""
    tmp = tmp_path_factory.mktemp("ask-output")
    source = tmp / "src"
    source.mkdir()
    for i in range(6):
        (source / f"report-{i}.txt").write_text(make_text(500 + i, 5000))
    root = str(tmp / "store")
    ingest(IngestConfig(root=root, corpus="big", source=str(source)))
    compress(CompressConfig(root=root, corpus="big", model=str(tiny_model), device="cpu", segment_length=1536))
    return root


def ask(root: str, model: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[str, dict]:
    args = ["ask", "Who holds the silver lantern by the river?", "--corpus", "big", "--root", root, "--model", str(model), "--no-adapter", "--device", "cpu", "--max-new-tokens", "8", *extra]
    assert main(args) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    return line, json.loads(line)


def test_ask_last_line_is_compact_by_default(big_corpus: str, tiny_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line, result = ask(big_corpus, tiny_model, capsys)
    assert len(line.encode()) < 4096, len(line.encode())
    assert {"answer", "documents", "positions", "latency_s"} <= set(result) and "segments" not in result
    read = sum(last - first + 1 for doc in result["documents"] for first, last in doc["segments"])
    assert read == 5  # the default top-k, not the whole decoder window
    assert result["positions"]["summary_vectors"] == 5 * 4 and all(d["segments_total"] > 3 for d in result["documents"])

    line, result = ask(big_corpus, tiny_model, capsys, "--doc", "report-2")
    assert len(line.encode()) < 4096
    (doc,) = result["documents"]
    assert doc["doc_id"] == "report-2" and doc["segments"] == [[0, doc["segments_total"] - 1]]

    line, verbose = ask(big_corpus, tiny_model, capsys, "--top-k", "3", "--verbose")
    assert len(verbose["segments"]) == 3 and len(verbose["token_ids"]) == verbose["generated_tokens"] and verbose["prompt_ids"]
