"""Rank segments for a question: the top-k of a corpus-wide question (`ask` without a document)
and the raw-text retrieval baseline of `evaluate`.

BM25 over the stored segment texts (bm25s) by default; a dense retriever (a sentence-transformers
model from a local path, imported only when asked for) behind the same `Retriever` protocol. Chosen
segments are returned in document order, since the decoder reads summaries in the order the
compressor wrote them. (A question that names its document reads that document's first segments,
as LLoCO does, without retrieval: `model.decoder.document_segments`.)
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import bm25s
import numpy as np

from lloco_core.errors import InputError
from lloco_core.qa.config import RetrieverKind


class Retriever(Protocol):
    def scores(self, question: str, texts: list[str]) -> np.ndarray:
        """One relevance score per text; higher is more relevant."""


class BM25Retriever:
    """Okapi BM25 (bm25s, English stopwords) over segment texts."""

    def scores(self, question: str, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros(0)
        corpus_tokens = bm25s.tokenize(texts, stopwords="en", show_progress=False)
        index = bm25s.BM25()
        index.index(corpus_tokens, show_progress=False)
        query = bm25s.tokenize([question], stopwords="en", show_progress=False)
        if not query.vocab or not len(query.ids[0]):
            return np.zeros(len(texts))
        query_words = [w for w in query.vocab if w in corpus_tokens.vocab]
        if not query_words:
            return np.zeros(len(texts))
        return np.asarray(index.get_scores(query_words), dtype=np.float64)


@functools.lru_cache(maxsize=2)
def _sentence_transformer(model_path: str, device: str) -> Any:
    """Load once per process; local files only, since nothing may come from a hub at run time."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as err:
        raise InputError("the dense retriever needs sentence-transformers: pip install 'lloco[dense]'") from err
    try:
        return SentenceTransformer(model_path, device=device, local_files_only=True)
    except (OSError, ValueError) as err:
        raise InputError(f"cannot load the sentence-transformers model {model_path!r}: {err}") from err


class DenseRetriever:
    """Cosine similarity of sentence-transformers embeddings (e.g. all-MiniLM-L6-v2 from a local folder)."""

    def __init__(self, model_path: str, device: str = "cpu", batch_size: int = 32) -> None:
        self.model_path = model_path
        self.device = device
        self.batch_size = batch_size

    def scores(self, question: str, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros(0)
        model = _sentence_transformer(self.model_path, self.device)
        vectors = model.encode([question, *texts], batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True)
        return np.asarray(vectors[1:] @ vectors[0], dtype=np.float64)


def make_retriever(kind: RetrieverKind = "bm25", dense_model: str | None = None, device: str = "cpu") -> Retriever:
    """The retriever a config names; dense needs a local model path."""
    if kind == "bm25":
        return BM25Retriever()
    if kind == "dense":
        if not dense_model:
            raise InputError("retriever 'dense' needs a sentence-transformers model folder (--dense-model)")
        return DenseRetriever(dense_model, device)
    raise InputError(f"unknown retriever {kind!r}; choose bm25 or dense")


def rank_segments(question: str, texts: list[str], retriever: Retriever | None = None) -> list[int]:
    """All segment indices, most relevant first (ties keep the earlier segment)."""
    scores = (retriever or BM25Retriever()).scores(question, texts)
    return sorted(range(len(texts)), key=lambda i: (-scores[i], i))


@dataclass(frozen=True)
class SegmentKey:
    """One stored segment of one document."""

    doc_id: str
    segment_index: int


def select_corpus_segments(
    question: str, segments: Sequence[tuple[SegmentKey, str]], budget: int, retriever: Retriever | None = None
) -> list[SegmentKey]:
    """Corpus-wide retrieval: the best `budget` segments over all documents.

    Documents come most relevant first (by their best segment), and each document's segments in
    document order, so the decoder still reads every document's summaries in the order written.
    """
    if budget <= 0 or not segments:
        return []
    texts = [text for _, text in segments]
    ranked = rank_segments(question, texts, retriever)[:budget]
    doc_rank: dict[str, int] = {}
    for position, i in enumerate(ranked):
        doc_rank.setdefault(segments[i][0].doc_id, position)
    keys = [segments[i][0] for i in ranked]
    return sorted(keys, key=lambda k: (doc_rank[k.doc_id], k.segment_index))
