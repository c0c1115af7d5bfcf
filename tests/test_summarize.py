"""Parity: the batched summarizer equals the AutoCompressor recurrence written as a plain loop
(tests/fixtures_compress.plain_summaries), float32 to 1e-5, and batching changes nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lloco_core.config import CompressConfig, IngestConfig
from lloco_core.model.autocompressor import LlamaAutoCompressorModel
from lloco_core.model.compress import compress
from lloco_core.model.summarize import summarize_documents
from lloco_core.store.documents import ingest
from lloco_core.store.embeddings import EmbeddingStore
from lloco_core.store.storage import Store
from tests.conftest import make_text
from tests.fixtures_compress import chunk, compressor, plain_summaries, text_with_tokens, token_ids, write_docs  # noqa: F401

SEG = 32
ATOL = 1e-5


def ids_of(compressor, n_tokens: int, seed: int) -> list[int]:
    return token_ids(compressor.tokenizer, make_text(seed, n_tokens))[:n_tokens]


@pytest.mark.parametrize(
    "n_tokens", [7, SEG, 3 * SEG, 3 * SEG + 11], ids=["one-short-segment", "exactly-1", "exactly-3", "3-plus-tail"]
)
def test_single_document_matches_plain_loop(compressor, n_tokens: int) -> None:
    ids = ids_of(compressor, n_tokens, seed=n_tokens)
    assert len(ids) == n_tokens
    segments = chunk(ids, SEG)
    (got,) = summarize_documents(compressor.model, [segments])
    want = plain_summaries(compressor.model, segments)
    S, H = compressor.summary_length, compressor.hidden_size
    assert got.dtype == torch.float32
    assert got.shape == (len(segments), S, H)
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)


def test_batched_equals_unbatched_and_plain_loop(compressor) -> None:
    """Documents of different lengths in one call: tails of different lengths at the same step
    (padding after the summary tokens) and documents that drop out early."""
    lengths = [7, SEG, SEG + 10, SEG + 25, 3 * SEG, 3 * SEG + 11, 5 * SEG + 1, 2 * SEG + 31]
    docs = [chunk(ids_of(compressor, n, seed=100 + i), SEG) for i, n in enumerate(lengths)]
    batched = summarize_documents(compressor.model, docs)
    assert len(batched) == len(docs)
    for doc, got in zip(docs, batched):
        (alone,) = summarize_documents(compressor.model, [doc])
        torch.testing.assert_close(got, alone, atol=ATOL, rtol=0)
        torch.testing.assert_close(got, plain_summaries(compressor.model, doc), atol=ATOL, rtol=0)


def test_batched_sdpa_equals_plain_loop_with_eager_attention(compressor, tiny_model: Path) -> None:
    """The reference loop on an eager-attention copy (explicit causal mask, no sdpa kernel): the
    library's unmasked padding after the summary tokens is exact under any attention kernel."""
    eager = LlamaAutoCompressorModel.from_pretrained(tiny_model, attn_implementation="eager", dtype=torch.float32).eval()
    docs = [chunk(ids_of(compressor, n, seed=300 + n), SEG) for n in (SEG + 3, 2 * SEG + 30, 3 * SEG)]
    for doc, got in zip(docs, summarize_documents(compressor.model, docs)):
        torch.testing.assert_close(got, plain_summaries(eager, doc), atol=ATOL, rtol=0)


def test_loaded_weights_are_the_checkpoint_weights(compressor, tiny_model: Path) -> None:
    """The parity tests share one loaded model; this pins it to the file (embed_summary at the root,
    nothing left at random init)."""
    saved = load_file(tiny_model / "model.safetensors")
    assert "embed_summary.weight" in saved
    state = compressor.model.state_dict()
    assert set(state) == set(saved)
    assert all(torch.equal(state[k], saved[k]) for k in saved)


def test_no_accumulation_matches_plain_loop(compressor) -> None:
    docs = [chunk(ids_of(compressor, n, seed=200 + n), SEG) for n in (SEG + 3, 4 * SEG, 3 * SEG + 20)]
    batched = summarize_documents(compressor.model, docs, accumulate=False)
    accumulated = summarize_documents(compressor.model, docs, accumulate=True)
    for doc, got, acc in zip(docs, batched, accumulated):
        torch.testing.assert_close(got, plain_summaries(compressor.model, doc, accumulate=False), atol=ATOL, rtol=0)
        # segments 0 and 1 see the same softprompt either way; from segment 2 on they must differ
        torch.testing.assert_close(got[:2], acc[:2], atol=ATOL, rtol=0)
        if len(doc) > 2:
            assert (got[2:] - acc[2:]).abs().max() > 1e-3


def test_softprompt_really_carries_over(compressor) -> None:
    """Guard against a plain loop and library that both ignore context: the same segment after a
    different first segment gets different summaries."""
    a, b, c = (ids_of(compressor, SEG, seed=s) for s in (1, 2, 3))
    out_ac, out_bc = summarize_documents(compressor.model, [[a, c], [b, c]])
    assert (out_ac[1] - out_bc[1]).abs().max() > 1e-3


def _compress_and_read(root: str, source: Path, model: str, docs: dict[str, str]) -> EmbeddingStore:
    ingest(IngestConfig(root=root, corpus="c", source=str(source)))
    summary = compress(CompressConfig(root=root, corpus="c", model=model, shard_size=2, batch_size=3, device="cpu"))
    assert summary.documents_compressed == len(docs)
    return EmbeddingStore(Store(root), "c", summary.encoder_key)


@pytest.mark.parametrize("accumulate", [True, False])
def test_pipeline_rows_equal_plain_loop(compressor, tiny_model: Path, tmp_path: Path, accumulate: bool) -> None:
    """ingest -> compress -> rows read back from committed shards == plain loop on the document text.
    accumulate_summary comes from the checkpoint's config.json, as for a real AutoCompressor."""
    model_dir = tiny_model
    if not accumulate:
        model_dir = tmp_path / "no-accumulate"
        shutil.copytree(tiny_model, model_dir)
        config = json.loads((model_dir / "config.json").read_text())
        config["accumulate_summary"] = False
        (model_dir / "config.json").write_text(json.dumps(config))
    tok = compressor.tokenizer
    docs = {
        "short": text_with_tokens(tok, 9, seed=1),
        "exact": text_with_tokens(tok, 3 * SEG, seed=2),
        "tail": text_with_tokens(tok, 3 * SEG + 5, seed=3),
        "long": make_text(4, 400),
    }
    source = write_docs(tmp_path / "src", docs)
    store = _compress_and_read(str(tmp_path / "store"), source, str(model_dir), docs)
    for doc_id, text in docs.items():
        segments = chunk(token_ids(tok, text), SEG)
        got = store.read_document(doc_id)
        assert got.segment_index == list(range(len(segments)))
        assert "".join(got.text) == text
        torch.testing.assert_close(got.summaries, plain_summaries(compressor.model, segments, accumulate), atol=ATOL, rtol=0)
    assert [len(chunk(token_ids(tok, docs[d]), SEG)) for d in ("short", "exact", "tail")] == [1, 3, 4]
