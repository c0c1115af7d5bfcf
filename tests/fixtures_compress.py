"""Helpers and fixtures shared by the compression-core tests (issue 2).

`plain_summaries` is the independent reference: the AutoCompressor recurrence written as the
simplest possible loop (one document, one segment, one forward pass at a time), so the batched
library code is checked against the definition in DESIGN.md, not against itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from lloco.cli import main as cli_main
from lloco_core.model.autocompressor import LoadedCompressor, load_compressor


@torch.inference_mode()
def plain_summaries(model: Any, segments: list[list[int]], accumulate: bool = True) -> torch.Tensor:
    """[n_segments, S, H]: for each segment, run the LLaMA body on
    [softprompt ; embed_tokens(segment) ; embed_summary] and keep the last S final hidden states."""
    summary_embeds = model.embed_summary.weight
    S, H = summary_embeds.shape
    softprompt = summary_embeds.new_zeros(0, H)
    out = []
    for ids in segments:
        tokens = model.get_input_embeddings()(torch.tensor([ids], dtype=torch.long))[0]
        inputs = torch.cat([softprompt, tokens, summary_embeds])[None]
        hidden = model.model(inputs_embeds=inputs).last_hidden_state[0]  # after the final norm
        summary = hidden[-S:]
        out.append(summary)
        softprompt = torch.cat([softprompt, summary]) if accumulate else summary
    return torch.stack(out) if out else summary_embeds.new_zeros(0, S, H)


def token_ids(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def chunk(ids: list[int], length: int) -> list[list[int]]:
    """Plain fixed-length cut, written here independently of lloco_core.model.segments."""
    return [ids[i : i + length] for i in range(0, len(ids), length)]


def text_with_tokens(tokenizer: Any, n_tokens: int, seed: int) -> str:
    """A make_text prefix that tokenizes to exactly `n_tokens` tokens (searched, then asserted)."""
    from tests.conftest import make_text

    words = make_text(seed, n_tokens + 50).split(" ")
    for n in range(1, len(words) + 1):
        text = " ".join(words[:n])
        count = len(token_ids(tokenizer, text))
        if count == n_tokens:
            return text
        if count > n_tokens:
            break
    # cut by characters when no word boundary fits exactly
    ids = token_ids(tokenizer, " ".join(words))
    for end in range(len(" ".join(words)), 0, -1):
        text = " ".join(words)[:end]
        if len(token_ids(tokenizer, text)) == n_tokens:
            return text
    raise AssertionError(f"no prefix of {len(ids)} tokens tokenizes to exactly {n_tokens}")


def write_docs(folder: Path, docs: dict[str, str]) -> Path:
    """A source folder of .txt files, one per document id."""
    folder.mkdir(parents=True, exist_ok=True)
    for doc_id, text in docs.items():
        (folder / f"{doc_id}.txt").write_text(text, encoding="utf-8")
    return folder


def run_cli(*argv: str) -> tuple[int, str, str, dict[str, Any] | None]:
    """The real `lloco` entry point in this process (no import cost): rc, stdout, stderr, last JSON line."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = cli_main(list(argv))
        except SystemExit as exit_:  # argparse errors
            rc = int(exit_.code or 0)
    stdout = out.getvalue()
    lines = stdout.strip().splitlines()
    result = json.loads(lines[-1]) if rc == 0 and lines else None
    return rc, stdout, err.getvalue(), result


def snapshot(root: str | Path) -> dict[str, str]:
    """Every file under a local store root -> sha256 of its bytes (records and data alike)."""
    root = Path(root)
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def commit_records(root: str | Path) -> list[Path]:
    """Every commit record under a local root (a `.tmp-*` file is one still being written)."""
    return sorted(p for p in Path(root).rglob("_commits/*.json") if not p.name.startswith("."))


@pytest.fixture(scope="session")
def compressor(tiny_model: Path) -> LoadedCompressor:
    """The tiny checkpoint loaded by the library's own loader (float32 on CPU)."""
    loaded = load_compressor(str(tiny_model), "cpu")
    assert loaded.dtype == torch.float32
    return loaded


@pytest.fixture
def env_clean(monkeypatch: pytest.MonkeyPatch) -> None:
    """No store or S3 settings leak in from the caller's environment."""
    for name in ("LLOCO_ROOT", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
