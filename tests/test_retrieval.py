"""Retrieval ranks the segment that holds a planted fact first, on segments a real compress stored."""

from __future__ import annotations

import pytest

from lloco_core.config import CompressConfig, IngestConfig
from lloco_core.errors import InputError
from lloco_core.model.compress import compress
from lloco_core.qa.retrieval import BM25Retriever, SegmentKey, make_retriever, rank_segments, select_corpus_segments
from lloco_core.store.documents import ingest
from lloco_core.store.embeddings import EmbeddingStore, pick_encoder
from lloco_core.store.storage import Store
from tests.conftest import make_text

NEEDLE = "The harbor master keeps the spare key to the lighthouse under a blue periwinkle flowerpot."
QUESTION = "Where does the harbor master keep the spare key to the lighthouse?"


@pytest.fixture
def needle_corpus(tmp_path, tiny_model, root):
    """One long document (~20 segments of 128 tokens) with the needle in the middle, plus two distractors."""
    source = tmp_path / "src"
    source.mkdir()
    haystack = make_text(7, 1200)
    cut = len(haystack) // 2
    cut = haystack.index(". ", cut) + 2
    (source / "long.txt").write_text(haystack[:cut] + NEEDLE + " " + haystack[cut:])
    (source / "other.txt").write_text(make_text(8, 300))
    (source / "third.txt").write_text(make_text(9, 300))
    ingest(IngestConfig(root=root, corpus="c", source=str(source)))
    compress(CompressConfig(root=root, corpus="c", model=str(tiny_model), device="cpu", segment_length=128))
    store = Store(root)
    return EmbeddingStore(store, "c", pick_encoder(store, "c", None))


def test_needle_segment_ranks_first(needle_corpus):
    doc = needle_corpus.read_document("long")
    assert len(doc.text) > 10
    holding = [i for i, t in enumerate(doc.text) if NEEDLE in t]
    assert len(holding) == 1
    assert rank_segments(QUESTION, doc.text)[0] == holding[0]
    chosen = select_corpus_segments(QUESTION, [(SegmentKey("long", i), t) for i, t in enumerate(doc.text)], budget=3)
    assert holding[0] in [k.segment_index for k in chosen] and [k.segment_index for k in chosen] == sorted(k.segment_index for k in chosen)
    assert len(chosen) == 3


def test_corpus_wide_retrieval_finds_the_needle_across_documents(needle_corpus):
    table = needle_corpus.read_all()
    segments = [
        (SegmentKey(d, i), t)
        for d, i, t in zip(table["doc_id"].to_pylist(), table["segment_index"].to_pylist(), table["text"].to_pylist())
    ]
    chosen = select_corpus_segments(QUESTION, segments, budget=4)
    assert len(chosen) == 4
    assert chosen[0].doc_id == "long"
    needle_keys = [k for k, t in segments if NEEDLE in t]
    assert needle_keys[0] in chosen
    for doc in {k.doc_id for k in chosen}:  # each document's segments stay in document order
        indices = [k.segment_index for k in chosen if k.doc_id == doc]
        assert indices == sorted(indices)


def test_small_corpora_use_every_segment_and_zero_budget_none():
    texts = ["alpha beta", "gamma delta", "epsilon"]
    segments = [(SegmentKey("d", i), t) for i, t in enumerate(texts)]
    assert [k.segment_index for k in select_corpus_segments("gamma", segments, budget=5)] == [0, 1, 2]
    assert select_corpus_segments("gamma", segments, budget=0) == []
    assert BM25Retriever().scores("zzz unknownword", texts).tolist() == [0.0, 0.0, 0.0]


def test_dense_retriever_needs_a_model_path_and_fails_clearly(tmp_path):
    with pytest.raises(InputError, match="dense-model"):
        make_retriever("dense")
    # without sentence-transformers installed: "needs sentence-transformers"; with it: "cannot load"
    with pytest.raises(InputError, match="sentence-transformers"):
        make_retriever("dense", str(tmp_path / "no-model")).scores("q", ["a", "b"])
