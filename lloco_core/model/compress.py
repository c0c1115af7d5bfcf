"""Compress a corpus: plan uncommitted documents, encode them in shards, commit each shard.

Planning reads commit records only, so a nightly run costs what is new. Work is cut into shards of
`shard_size` documents in doc_id order; each shard is written whole and committed, so a kill loses
at most one shard and a re-run continues where the last commit stopped.
"""

from __future__ import annotations

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
from lloco_core.store.backlog import backlog, compact_embeddings_if_needed
from lloco_core.store.datalog import COMPACT_RECORDS, versions_in
from lloco_core.store.documents import DocumentRef, DocumentTable
from lloco_core.store.embeddings import EmbeddingStore, shard_name, shard_schema, tensor_to_arrow
from lloco_core.store.leases import Leases
from lloco_core.store.records import Record
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
    problems: list[dict[str, str]] = field(default_factory=list)
    planning: str = "full"  # "fast" (snapshot + what is new) or "full" (every record)


def plan_compress(store: Store, corpus: str, settings: EncoderSettings, shard_size: int, full: bool = False) -> CompressPlan:
    """Documents whose current version has no usable committed segments under this encoder, in shards.

    Planning costs what is new (lloco_core/store/backlog.py). Committed files that one listing
    shows missing or truncated are dropped here (a tombstone record), so their documents are
    compressed again now and the next planning is fast again."""
    documents = DocumentTable(store, corpus)
    embeddings = EmbeddingStore(store, corpus, settings.key)
    found = backlog(embeddings, documents, full=full)
    if not found.documents:
        raise InputError(f"corpus {corpus!r} has no documents in {store.uri(store.path(corpus))}: run `lloco ingest` first")
    embeddings.data.drop(found.bad_shards)
    documents.data.drop(found.bad_parts)
    todo = found.todo
    shards = [ShardPlan(shard_name(settings.key, [(r.doc_id, r.sha256) for r in refs]), tuple(refs)) for refs in _chunks(todo, shard_size)]
    return CompressPlan(settings.key, shards, found.documents - len(todo), embeddings.uri, [p.as_dict() for p in found.problems], found.path)


def _chunks(items: list[DocumentRef], size: int) -> list[list[DocumentRef]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


@dataclass
class ShardResult:
    name: str
    documents: int
    segments: int
    tokens: int
    seconds: float
    already_committed: bool = False
    deferred: list[DocumentRef] = field(default_factory=list)  # leased by another run: not done here
    committed_elsewhere: int = 0  # committed by another run between planning and encoding
    problems: list[dict[str, str]] = field(default_factory=list)


BatchProgress = Callable[[int, int], None]
"""`on_batch(documents, tokens)`: called after each segment step of a batch with its tokens (documents
0), and once the batch is done with its documents (tokens 0)."""


def compress_shard(
    store: Store,
    corpus: str,
    settings: EncoderSettings,
    shard: ShardPlan,
    compressor: LoadedCompressor,
    batch_size: int,
    batch_positions: int | None = None,
    on_batch: BatchProgress | None = None,
    leases: Leases | None = None,
    seen: dict[str, Record] | None = None,
) -> ShardResult:
    """Encode one shard's documents in batches of similar length, write the shard, commit it.

    Before encoding, documents another run committed since planning are left out, and the rest
    are leased (lloco_core/store/leases.py): documents another live run holds are deferred, not
    encoded twice. What is left is written under the name of what it holds."""
    started = time.perf_counter()
    embeddings = EmbeddingStore(store, corpus, settings.key)
    view = embeddings.log.view(cache=seen)
    done = versions_in(view.records)  # committed since planning (tombstones honoured)
    refs = [r for r in shard.documents if (r.doc_id, r.sha256) not in done]
    if not refs:
        return ShardResult(shard.name, len(shard.documents), 0, 0, 0.0, already_committed=True)
    leases = leases or Leases(store, embeddings.log.prefix)
    name = shard_name(settings.key, [(r.doc_id, r.sha256) for r in refs])
    lease, claimed = leases.claim(name, {r.doc_id: r.sha256 for r in refs}) if refs else (None, {})
    deferred = [r for r in refs if r.doc_id not in claimed]
    refs = [r for r in refs if r.doc_id in claimed]
    if lease is not None and refs:
        # another run may have committed and released between our look at the log and our claim:
        # its commit precedes its release, so a second look now sees it
        done = versions_in(embeddings.log.view(cache=seen).records)
        refs = [r for r in refs if (r.doc_id, r.sha256) not in done]
        if not refs:
            leases.release(lease)
            lease = None
    if lease is None or not refs:
        others = len(shard.documents) - len(deferred)  # committed by another run since planning
        return ShardResult(shard.name, others, 0, 0, 0.0, already_committed=True, deferred=deferred)
    documents = DocumentTable(store, corpus)
    with leases.held(lease, name, claimed):
        result = _encode_and_commit(embeddings, documents, settings, refs, compressor, batch_size, batch_positions, on_batch, deferred, started)
    result.committed_elsewhere = len(shard.documents) - len(deferred) - len(refs)
    if len(view.records) + 1 >= COMPACT_RECORDS:  # the flow's shard tasks compact too, not only `compress`
        compact_embeddings_if_needed(embeddings, documents)
    return result


def _encode_and_commit(
    embeddings: EmbeddingStore,
    documents: DocumentTable,
    settings: EncoderSettings,
    refs: list[DocumentRef],
    compressor: LoadedCompressor,
    batch_size: int,
    batch_positions: int | None,
    on_batch: BatchProgress | None,
    deferred: list[DocumentRef],
    started: float,
) -> ShardResult:
    texts, bad_parts = documents.read_texts_checked(refs)
    problems = [{"path": documents.store.uri(documents.log.data_path(p)), "problem": why} for p, why in bad_parts.items()]
    documents.data.drop(bad_parts)  # a corrupt part: its documents are ingested again next time
    refs = [r for r in refs if r.doc_id in texts]
    name = shard_name(settings.key, [(r.doc_id, r.sha256) for r in refs])
    if not refs:
        return ShardResult(name, 0, 0, 0, 0.0, deferred=deferred, problems=problems)
    segmented = {ref.doc_id: segment_document(compressor.tokenizer, texts[ref.doc_id], settings.segment_length) for ref in refs}
    if batch_positions is None:
        batch_positions = GPU_BATCH_POSITIONS if compressor.device.type == "cuda" else CPU_BATCH_POSITIONS
    token_ids = [[s.token_ids for s in segmented[ref.doc_id]] for ref in refs]
    summaries = {}
    with compressor.lock:
        for batch in plan_batches([[len(t) for t in doc] for doc in token_ids], settings, batch_size, batch_positions):
            on_step = None if on_batch is None else (lambda tokens: on_batch(0, tokens))  # tokens as each segment step ends
            outs = summarize_documents(compressor.model, [token_ids[d] for d in batch], settings.accumulate_summary, on_step)
            summaries.update({refs[d].doc_id: out for d, out in zip(batch, outs)})
            if on_batch is not None:
                on_batch(len(batch), 0)
    rows: dict[str, list[Any]] = {k: [] for k in ("doc_id", "doc_sha256", "segment_index", "token_start", "token_end", "text")}
    for ref in refs:
        for seg in segmented[ref.doc_id]:
            for key, value in zip(rows, (ref.doc_id, ref.sha256, seg.index, seg.token_start, seg.token_end, seg.text)):
                rows[key].append(value)
    stacked = torch.cat([summaries[ref.doc_id] for ref in refs])
    schema = shard_schema(settings.summary_length, settings.hidden_size, settings.stored_dtype, settings.key, settings.segment_length)
    table = pa.table({**rows, "summary": tensor_to_arrow(stacked, settings.stored_dtype)}, schema=schema)
    embeddings.write_shard(name, table, {r.doc_id: r.sha256 for r in refs}, {})
    tokens = sum(seg.token_end - seg.token_start for segs in segmented.values() for seg in segs)
    return ShardResult(name, len(refs), table.num_rows, tokens, time.perf_counter() - started, deferred=deferred, problems=problems)


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
    planning: str = "full"
    problems: list[dict[str, str]] = field(default_factory=list)

    def add(self, result: ShardResult) -> None:
        self.problems.extend(result.problems)
        if result.already_committed:
            self.documents_skipped += result.documents
            return
        self.documents_skipped += result.committed_elsewhere
        if not result.documents:
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


def compress(
    config: CompressConfig, on_shard: Callable[[int, int, ShardResult], None] | None = None, on_plan: Callable[[CompressPlan], None] | None = None,
    on_batch: BatchProgress | None = None,
) -> CompressSummary:
    """Compress every uncompressed document of the corpus; returns what was done. Callbacks report
    progress: the plan once, then each forward pass (`on_batch`) and each committed shard.

    Documents another run is compressing at the same time are waited for, not encoded twice; the
    commit log is compacted into a snapshot by the shard writers every `COMPACT_RECORDS` records."""
    started = time.perf_counter()
    store = Store.from_config(config)
    settings = encoder_settings(config)
    plan = plan_compress(store, config.corpus, settings, config.shard_size)
    summary = CompressSummary(config.corpus, plan.encoder_key, plan.store, documents_skipped=plan.documents_skipped, planning=plan.planning, problems=list(plan.problems))
    if on_plan is not None:
        on_plan(plan)
    embeddings, documents = EmbeddingStore(store, config.corpus, settings.key), DocumentTable(store, config.corpus)
    leases, seen = Leases(store, embeddings.log.prefix), {}
    shards, done, total = plan.shards, 0, len(plan.shards)
    while shards:
        deferred: list[DocumentRef] = []
        for shard in shards:
            compressor = cached_compressor(settings, config.device)
            result = compress_shard(store, config.corpus, settings, shard, compressor, config.batch_size, config.batch_positions, on_batch, leases, seen)
            summary.add(result)
            deferred += result.deferred
            if len(result.deferred) == len(shard.documents):
                total -= 1  # wholly another run's for now: counted when taken over
                continue
            done += 1
            if on_shard is not None:
                on_shard(done, total, result)
        shards = _take_over(store, config, settings, leases, deferred, summary)
        total += len(shards)
    compact_embeddings_if_needed(embeddings, documents)
    summary.seconds = round(time.perf_counter() - started, 3)
    summary.tokens_per_s = round(summary.tokens / summary.seconds, 1) if summary.seconds else 0.0
    return summary


def _take_over(store: Store, config: CompressConfig, settings: EncoderSettings, leases: Leases, deferred: list[DocumentRef], summary: CompressSummary) -> list[ShardPlan]:
    """After its own shards: wait for the documents another run had leased, then plan what it left."""
    if not deferred:
        return []
    leases.wait_for({r.doc_id: r.sha256 for r in deferred})
    wanted = {(r.doc_id, r.sha256) for r in deferred}
    again = plan_compress(store, config.corpus, settings, config.shard_size)
    left = [ref for shard in again.shards for ref in shard.documents if (ref.doc_id, ref.sha256) in wanted]
    summary.documents_skipped += len(wanted) - len(left)  # committed by the other run
    return [ShardPlan(shard_name(settings.key, [(r.doc_id, r.sha256) for r in refs]), tuple(refs)) for refs in _chunks(left, config.shard_size)]
