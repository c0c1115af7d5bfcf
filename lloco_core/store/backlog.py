"""Which current documents have no usable embeddings under an encoder: the compress backlog, in O(new).

Every embeddings snapshot stores, beside the folded state, its `pending` list (current documents
without embeddings at that moment) and the point of the documents log it accounts for (the
documents snapshot generation and the live document records it read). Planning then reads:

- the embeddings snapshot record, its files table and pending list (small: one row per shard, and
  what was not compressed yet), and the embeddings records committed since;
- the document records committed since that point (what is new: the nightly increment);
- one listing with sizes of the shards folder and of the documents folder.

It never reads the folded entries, so its cost follows what is new, not the corpus. Order matters:
the embeddings records are listed before the documents are read, so a document compressed by
another run in between is seen as pending (and then found committed), never as reconciled.

The full read (every snapshot run plus every live record of both logs) is used when there is no
snapshot yet, after a tombstone (a file found missing or corrupt), when a listing shows a committed
file missing or truncated, or when a document record does not say how many documents it added.
Both paths give the same backlog (tests check it); the fast one only reads less.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Literal

import pyarrow as pa

from lloco_core.store.datalog import apply_record, no_gc, versions_in
from lloco_core.store.documents import DocumentRef, DocumentTable
from lloco_core.store.embeddings import EmbeddingStore
from lloco_core.store.records import DocumentRecord, Problem, Reconciled

PENDING_SCHEMA = pa.schema(
    [("doc_id", pa.string()), ("sha256", pa.string()), ("part", pa.string()), ("part_size", pa.int64()), ("committed_ns", pa.int64())]
)


@dataclass
class Backlog:
    todo: list[DocumentRef]  # doc_id order
    documents: int  # current documents of the corpus
    path: Literal["fast", "full"]
    reconciled: Reconciled
    todo_meta: dict[str, tuple[int | None, int]] = field(default_factory=dict)  # doc_id -> (part size, committed_ns)
    problems: list[Problem] = field(default_factory=list)
    bad_shards: dict[str, str] = field(default_factory=dict)
    bad_parts: dict[str, str] = field(default_factory=dict)
    reads: int = 0  # commit records and snapshot files fetched

    def pending_table(self) -> pa.Table:
        rows = [(r.doc_id, r.sha256, r.part, *self.todo_meta.get(r.doc_id, (None, 0))) for r in self.todo]
        return pa.Table.from_pylist([dict(zip(PENDING_SCHEMA.names, row)) for row in rows], schema=PENDING_SCHEMA)


def backlog(embeddings: EmbeddingStore, documents: DocumentTable, full: bool = False) -> Backlog:
    """The documents to compress: the fast path when it applies, else the full read."""
    found = None if full else _fast(embeddings, documents)
    if found is not None:
        return found
    with no_gc():
        return _full(embeddings, documents)


def _full(embeddings: EmbeddingStore, documents: DocumentTable) -> Backlog:
    emb_state = embeddings.state(refresh=True)  # embeddings first (see the module docstring)
    committed = embeddings.committed()
    doc_state = documents.state()
    current = documents.current(doc_state)
    todo = [ref for ref in current.values() if (ref.doc_id, ref.sha256) not in committed]
    meta = {}
    for doc_id, sha, part, ns in doc_state.entries or []:
        ref = current.get(doc_id)
        if ref is not None and (sha, part) == (ref.sha256, ref.part):
            info = doc_state.files.get(part)
            meta[doc_id] = (info.size if info else None, ns)
    view = doc_state.view
    reconciled = Reconciled(
        documents_generation=view.snapshot.generation if view.snapshot else 0, documents_records=sorted(view.names), documents=len(current)
    )
    reads = emb_state.view.files_read + view.files_read + sum(len(s.runs) + 1 for s in (emb_state.view.snapshot, view.snapshot) if s)
    return Backlog(
        todo,
        len(current),
        "full",
        reconciled,
        {r.doc_id: meta.get(r.doc_id, (None, 0)) for r in todo},
        [*documents.problems, *embeddings.problems],
        dict(emb_state.bad),
        dict(doc_state.bad),
        reads,
    )


def _fast(embeddings: EmbeddingStore, documents: DocumentTable) -> Backlog | None:
    view = embeddings.log.view()
    snapshot = view.snapshot
    if snapshot is None or snapshot.pending is None or snapshot.reconciled is None or any(r.drop for r in view.records):
        return None
    files = embeddings.data._snapshot_files(snapshot)
    for record in view.records:
        apply_record(files, record)
    if embeddings.data.check_files(files):
        return None
    reads = view.files_read + 2  # + files table + pending list

    # document records committed after the reconciled point
    seen = set(snapshot.reconciled.documents_records)
    doc_snapshots, newest = documents.log.generations()
    start = snapshot.reconciled.documents_generation
    listed = [p for g in range(start, newest + 1) for p in documents.store.list(documents.log.generation_folder(g), ".json")]
    new_paths = [p for p in listed if p.rsplit("/", 1)[-1].removesuffix(".json") not in seen]
    new, problems = documents.log.read_records(new_paths)
    reads += len(new_paths)
    new_records: list[DocumentRecord] = sorted((r for _, r in new), key=lambda r: (r.committed_ns, r.name))
    if any(r.drop or r.added is None for r in new_records):
        return None

    candidates: dict[str, tuple[str, str, int | None, int]] = {}  # doc_id -> (sha, part, part size, ns)
    for row in embeddings.data.read_snapshot_table(snapshot.pending).to_pylist():
        candidates[row["doc_id"]] = (row["sha256"], row["part"], row["part_size"], row["committed_ns"])
    for record in new_records:
        size = record.files[record.part].size if record.part in record.files else None
        for doc_id, sha in record.documents.items():
            known = candidates.get(doc_id)
            if known is None or record.committed_ns >= known[3]:
                candidates[doc_id] = (sha, record.part, size, record.committed_ns)

    # the parts of every candidate must be there, whole
    listing = documents.data.listing()
    for sha, part, size, _ in candidates.values():
        if part not in listing or (size is not None and listing[part] != size):
            return None

    committed = versions_in(view.records)
    todo = [DocumentRef(d, sha, part) for d, (sha, part, _, _) in sorted(candidates.items()) if (d, sha) not in committed]
    meta = {d: (candidates[d][2], candidates[d][3]) for d in (r.doc_id for r in todo)}
    first = doc_snapshots[0] if doc_snapshots else 0
    in_force = [p.rsplit("/", 1)[-1].removesuffix(".json") for p in listed if _generation_of(p) >= first]
    reconciled = Reconciled(
        documents_generation=max(first, start) if first >= start else start,
        documents_records=sorted(set(in_force) if first >= start else set(in_force) | seen),
        documents=snapshot.reconciled.documents + sum(r.added or 0 for r in new_records),
    )
    return Backlog(todo, reconciled.documents, "fast", reconciled, meta, [*view.problems, *problems], reads=reads)


def _generation_of(path: str) -> int:
    folder = path.rsplit("/", 2)[-2]
    return int(folder[1:]) if folder.startswith("g") and folder[1:].isdigit() else 0


_compacting = threading.Lock()


def compact_embeddings_if_needed(embeddings: EmbeddingStore, documents: DocumentTable) -> bool:
    """Compact once enough records are live (shard writers call this; one compaction at a time per process)."""
    with _compacting:
        if not embeddings.data.needs_compaction():
            return False
        compact_embeddings(embeddings, documents)
        return True


def compact_embeddings(embeddings: EmbeddingStore, documents: DocumentTable) -> None:
    """Snapshot the embeddings log with its backlog, so the next planning reads only what is new."""

    def pending(_: object) -> dict[str, object]:
        found = backlog(embeddings, documents)
        return {"pending": embeddings.data.write_pending(found.pending_table()), "reconciled": found.reconciled}

    embeddings.data.compact(pending)
