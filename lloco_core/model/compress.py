"""Compress a corpus: plan uncommitted documents, encode them in shards, commit each shard.

Planning reads commit records only, so a nightly run costs what is new. Work is cut into shards of
`shard_size` documents in doc_id order; each shard is written whole and committed, so a kill loses
at most one shard and a re-run continues where the last commit stopped.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa
import torch

from lloco_core.config import CompressConfig
from lloco_core.errors import InputError
from lloco_core.fingerprint import checkpoint_fingerprint, stable_hash
from lloco_core.model.autocompressor import LoadedCompressor, check_checkpoint, load_compressor, load_config, model_segment_length, resolve_device
from lloco_core.model.batching import CPU_BATCH_POSITIONS, GPU_BATCH_POSITIONS, plan_batches
from lloco_core.model.checkpoint import resolve_model_folder
from lloco_core.model.segments import segment_document
from lloco_core.model.summarize import summarize_documents
from lloco_core.store.documents import DocumentRef, DocumentTable
from lloco_core.store.embeddings import EmbeddingStore, shard_schema, tensor_to_arrow
from lloco_core.store.storage import Store

ENCODER_FORMAT = 1


@dataclass(frozen=True)
class EncoderSettings:
    """Everything that changes the numbers a compress writes; its hash is the encoder key."""

    model_folder: str
    weights: str
    summary_length: int
    hidden_size: int
    accumulate_summary: bool
    segment_length: int
    compute_dtype: str
    stored_dtype: str

    @property
    def key(self) -> str:
        fields = asdict(self)
        fields.pop("model_folder")
        return "enc-" + stable_hash({"format": ENCODER_FORMAT, **fields})


def encoder_settings(config: CompressConfig) -> EncoderSettings:
    """The encoder key without loading the model: config + hashes of the weight files that load."""
    folder = resolve_model_folder(config.model, config.revision)
    model_config = load_config(folder)
    check_checkpoint(folder, model_config)  # an incomplete checkpoint stops here, before any planning
    compute = "bfloat16" if resolve_device(config.device).type == "cuda" else "float32"
    return EncoderSettings(
        model_folder=folder,
        weights=checkpoint_fingerprint(folder),
        summary_length=int(model_config.summary_length),
        hidden_size=int(model_config.hidden_size),
        accumulate_summary=bool(getattr(model_config, "accumulate_summary", True)),
        segment_length=config.segment_length if config.segment_length is not None else model_segment_length(model_config),
        compute_dtype=compute,
        stored_dtype=compute if config.stored_dtype == "auto" else config.stored_dtype,
    )


@dataclass(frozen=True)
class ShardPlan:
    name: str
    documents: tuple[DocumentRef, ...]
    supersedes: tuple[tuple[str, str], ...] = ()


@dataclass
class CompressPlan:
    encoder_key: str
    shards: list[ShardPlan]
    documents_skipped: int
    store: str


def shard_name(encoder_key: str, documents: list[DocumentRef]) -> str:
    content = encoder_key + "".join(f"\n{d.doc_id}\t{d.sha256}" for d in documents)
    return "shard-" + hashlib.sha256(content.encode()).hexdigest()[:20]


def plan_compress(store: Store, corpus: str, settings: EncoderSettings, shard_size: int) -> CompressPlan:
    """Documents whose current version has no committed segments under this encoder, in shards."""
    current = DocumentTable(store, corpus).current()
    if not current:
        raise InputError(f"corpus {corpus!r} has no documents in {store.uri(store.path(corpus))}: run `lloco ingest` first")
    embeddings = EmbeddingStore(store, corpus, settings.key)
    committed = embeddings.committed()
    compressed_shas: dict[str, str] = {doc_id: sha for doc_id, sha in committed}
    todo = sorted((ref for ref in current.values() if (ref.doc_id, ref.sha256) not in committed), key=lambda r: r.doc_id)
    shards = []
    for start in range(0, len(todo), shard_size):
        refs = todo[start : start + shard_size]
        old = tuple((r.doc_id, compressed_shas[r.doc_id]) for r in refs if r.doc_id in compressed_shas)
        shards.append(ShardPlan(shard_name(settings.key, refs), tuple(refs), old))
    return CompressPlan(settings.key, shards, len(current) - len(todo), embeddings.uri)


@dataclass
class ShardResult:
    name: str
    documents: int
    segments: int
    tokens: int
    seconds: float
    already_committed: bool = False


def compress_shard(
    store: Store, corpus: str, settings: EncoderSettings, shard: ShardPlan, compressor: LoadedCompressor, batch_size: int, batch_positions: int | None = None
) -> ShardResult:
    """Encode one shard's documents in batches of similar length, write the shard, commit it."""
    started = time.perf_counter()
    embeddings = EmbeddingStore(store, corpus, settings.key)
    if embeddings.log.is_committed(shard.name):
        return ShardResult(shard.name, len(shard.documents), 0, 0, 0.0, already_committed=True)
    texts = DocumentTable(store, corpus).read_texts(list(shard.documents))
    segmented = {ref.doc_id: segment_document(compressor.tokenizer, texts[ref.doc_id], settings.segment_length) for ref in shard.documents}
    if batch_positions is None:
        batch_positions = GPU_BATCH_POSITIONS if compressor.device.type == "cuda" else CPU_BATCH_POSITIONS
    token_ids = [[s.token_ids for s in segmented[ref.doc_id]] for ref in shard.documents]
    summaries = {}
    with compressor.lock:
        for batch in plan_batches([[len(t) for t in doc] for doc in token_ids], settings, batch_size, batch_positions):
            outs = summarize_documents(compressor.model, [token_ids[d] for d in batch], settings.accumulate_summary)
            summaries.update({shard.documents[d].doc_id: out for d, out in zip(batch, outs)})
    rows: dict[str, list[Any]] = {k: [] for k in ("doc_id", "doc_sha256", "segment_index", "token_start", "token_end", "text")}
    for ref in shard.documents:
        for seg in segmented[ref.doc_id]:
            for key, value in zip(rows, (ref.doc_id, ref.sha256, seg.index, seg.token_start, seg.token_end, seg.text)):
                rows[key].append(value)
    stacked = torch.cat([summaries[ref.doc_id] for ref in shard.documents])
    schema = shard_schema(settings.summary_length, settings.hidden_size, settings.stored_dtype, settings.key, settings.segment_length)
    table = pa.table({**rows, "summary": tensor_to_arrow(stacked, settings.stored_dtype)}, schema=schema)
    embeddings.write_shard(shard.name, table, {r.doc_id: r.sha256 for r in shard.documents}, dict(shard.supersedes))
    tokens = sum(seg.token_end - seg.token_start for segs in segmented.values() for seg in segs)
    return ShardResult(shard.name, len(shard.documents), table.num_rows, tokens, time.perf_counter() - started)


@dataclass
class CompressSummary:
    corpus: str
    encoder_key: str
    store: str
    documents_compressed: int = 0
    documents_skipped: int = 0
    segments_written: int = 0
    shards_committed: int = 0
    tokens: int = 0
    seconds: float = 0.0
    tokens_per_s: float = 0.0
    shards: list[str] = field(default_factory=list)

    def add(self, result: ShardResult) -> None:
        if result.already_committed:
            self.documents_skipped += result.documents
            return
        self.documents_compressed += result.documents
        self.segments_written += result.segments
        self.shards_committed += 1
        self.tokens += result.tokens
        self.shards.append(result.name)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_compressors: dict[tuple[str, str, str | None], LoadedCompressor] = {}
_compressors_lock = threading.Lock()


def cached_compressor(settings: EncoderSettings, device: str) -> LoadedCompressor:
    """One loaded model per process and checkpoint: shard tasks in the same worker share it."""
    key = (settings.model_folder, device, settings.weights)
    with _compressors_lock:
        if key not in _compressors:
            _compressors[key] = load_compressor(settings.model_folder, device)
        return _compressors[key]


def compress(config: CompressConfig, on_shard: Callable[[int, int, ShardResult], None] | None = None) -> CompressSummary:
    """Compress every uncompressed document of the corpus; returns what was done."""
    started = time.perf_counter()
    store = Store.from_config(config)
    settings = encoder_settings(config)
    plan = plan_compress(store, config.corpus, settings, config.shard_size)
    summary = CompressSummary(config.corpus, plan.encoder_key, plan.store, documents_skipped=plan.documents_skipped)
    if plan.shards:
        compressor = cached_compressor(settings, config.device)
        for done, shard in enumerate(plan.shards, start=1):
            result = compress_shard(store, config.corpus, settings, shard, compressor, config.batch_size, config.batch_positions)
            summary.add(result)
            if on_shard is not None:
                on_shard(done, len(plan.shards), result)
    summary.seconds = round(time.perf_counter() - started, 3)
    summary.tokens_per_s = round(summary.tokens / summary.seconds, 1) if summary.seconds else 0.0
    return summary
