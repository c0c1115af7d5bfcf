"""The corpus's documents: content-hashed Parquet parts made visible by commit records.

Ingest writes only documents whose text is new for their id (new ids, or changed text), so a
nightly re-ingest of the same folder writes nothing, and a changed document gets a new sha256
that the compress planner sees as uncompressed work.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from lloco_core.config import IngestConfig
from lloco_core.store.commitlog import CommitLog
from lloco_core.store.sources import Skipped, SourceDocument, read_source
from lloco_core.store.storage import Store, storage_options_for

DOCUMENT_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("text", pa.large_string()),
        ("sha256", pa.string()),
        ("source", pa.string()),
        ("metadata", pa.string()),  # JSON text: any engine can read it, no schema drift across parts
    ]
)
PART_MAX_BYTES = 256 << 20
ROW_GROUP_ROWS = 256


@dataclass(frozen=True)
class DocumentRef:
    """Where the current version of a document lives."""

    doc_id: str
    sha256: str
    part: str


class DocumentTable:
    """`<root>/<corpus>/documents/`: parts + commit records; later commits supersede earlier ones."""

    def __init__(self, store: Store, corpus: str) -> None:
        self.store = store
        self.corpus = corpus
        self.log = CommitLog(store, store.path(corpus, "documents"))

    def current(self) -> dict[str, DocumentRef]:
        """doc_id -> its latest committed version, from commit records alone (no Parquet read)."""
        refs: dict[str, DocumentRef] = {}
        for record in self.log.records():
            for doc_id, sha in record["documents"].items():
                refs[doc_id] = DocumentRef(doc_id, sha, record["part"])
        return refs

    def read_texts(self, refs: list[DocumentRef]) -> dict[str, str]:
        """Texts of the given document versions, reading each part once."""
        by_part: dict[str, set[tuple[str, str]]] = {}
        for ref in refs:
            by_part.setdefault(ref.part, set()).add((ref.doc_id, ref.sha256))
        texts: dict[str, str] = {}
        for part, wanted in by_part.items():
            # Parts are sorted by doc_id in small row groups, so the filter skips row groups by their
            # statistics: a shard reads its own documents, not the whole part.
            ids = sorted({doc_id for doc_id, _ in wanted})
            table = pq.read_table(
                self.log.data_path(part), filesystem=self.store.fs, columns=["doc_id", "sha256", "text"], filters=[("doc_id", "in", ids)]
            )
            for doc_id, sha, text in zip(*(table.column(c).to_pylist() for c in ("doc_id", "sha256", "text"))):
                if (doc_id, sha) in wanted:
                    texts[doc_id] = text
        return texts

    def append(self, documents: list[SourceDocument]) -> str:
        """Write one part holding these documents, then commit it. Returns the part name."""
        rows = sorted(documents, key=lambda d: d.doc_id)
        digest = hashlib.sha256("\n".join(f"{d.doc_id}\t{d.sha256}" for d in rows).encode()).hexdigest()[:20]
        part = f"part-{digest}.parquet"
        table = pa.table(
            {
                "doc_id": [d.doc_id for d in rows],
                "text": [d.text for d in rows],
                "sha256": [d.sha256 for d in rows],
                "source": [d.source for d in rows],
                "metadata": [json.dumps(d.metadata, sort_keys=True) for d in rows],
            },
            schema=DOCUMENT_SCHEMA,
        )
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd", row_group_size=ROW_GROUP_ROWS)
        self.store.write_bytes(self.log.data_path(part), buffer.getvalue())
        self.log.commit(part.removesuffix(".parquet"), {"part": part, "documents": {d.doc_id: d.sha256 for d in rows}})
        return part


@dataclass
class IngestSummary:
    corpus: str
    documents_added: int = 0
    documents_updated: int = 0
    documents_unchanged: int = 0
    parts_committed: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    store: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _drop_conflicting_ids(items: list[SourceDocument | Skipped]) -> tuple[list[SourceDocument], list[Skipped]]:
    """Keep one document per id; an id given twice with different text is ambiguous: skip it."""
    skipped = [i for i in items if isinstance(i, Skipped)]
    by_id: dict[str, list[SourceDocument]] = {}
    for doc in (i for i in items if isinstance(i, SourceDocument)):
        by_id.setdefault(doc.doc_id, []).append(doc)
    kept: list[SourceDocument] = []
    for doc_id, versions in by_id.items():
        if len({v.sha256 for v in versions}) > 1:
            where = ", ".join(v.source for v in versions)
            skipped.append(Skipped(doc_id, f"document id {doc_id!r} appears with different texts in {where}; none was ingested"))
        else:
            kept.append(versions[0])
    return kept, skipped


def ingest(config: IngestConfig) -> IngestSummary:
    """Add new and changed documents from `config.source` to the corpus; never rewrite unchanged ones."""
    store = Store.from_config(config)
    table = DocumentTable(store, config.corpus)
    documents, skipped = _drop_conflicting_ids(list(read_source(config.source, storage_options_for(config.source, config.endpoint_url))))
    current = table.current()
    summary = IngestSummary(config.corpus, skipped=[s.as_dict() for s in skipped], store=store.uri(table.log.prefix))
    pending: list[SourceDocument] = []
    pending_bytes = 0
    for doc in sorted(documents, key=lambda d: d.doc_id):
        known = current.get(doc.doc_id)
        if known is not None and known.sha256 == doc.sha256:
            summary.documents_unchanged += 1
            continue
        if known is None:
            summary.documents_added += 1
        else:
            summary.documents_updated += 1
        pending.append(doc)
        pending_bytes += len(doc.text)
        if pending_bytes >= PART_MAX_BYTES:
            table.append(pending)
            summary.parts_committed += 1
            pending, pending_bytes = [], 0
    if pending:
        table.append(pending)
        summary.parts_committed += 1
    return summary
