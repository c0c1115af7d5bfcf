"""The corpus's documents: content-hashed Parquet parts made visible by commit records.

Ingest writes only documents whose text is new for their id (new ids, or changed text), so a
nightly re-ingest of the same folder writes nothing, and a changed document gets a new sha256
that the compress planner sees as uncompressed work.

Integrity: a part's record carries its size and sha256 and is named by the digest of the
(doc_id, sha256) pairs it holds, so a record cannot claim documents of another part. Readers fetch
only the row groups of the documents they need (no whole-file checksum on that path), and check
every text they return against its document's sha256: a changed byte can never reach a caller.
A part found missing, truncated or corrupt is dropped (a tombstone record) by the writer that
found it; its documents are then absent, and the next ingest of their source writes them again.
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
from lloco_core.errors import StoreError
from lloco_core.store.datalog import DataLog, LogState
from lloco_core.store.records import DocumentRecord, FileSum, Problem, documents_digest
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


def part_name(documents: dict[str, str]) -> str:
    return f"part-{documents_digest(documents)}.parquet"


def check_part_record(record: DocumentRecord) -> str | None:
    """A part's record must be named by what it holds; a record without a part only drops files."""
    if record.part is None:
        return None if record.drop and not record.documents else "a record without 'part' must only drop files"
    if record.part != part_name(record.documents) or record.name != record.part.removesuffix(".parquet"):
        return f"part {record.part!r} does not hold the documents the record lists (its name is their digest)"
    if record.format >= 2 and record.part not in record.files:
        return f"no checksum for {record.part!r}"
    return None


class DocumentTable:
    """`<root>/<corpus>/documents/`: parts + commit records; later commits supersede earlier ones."""

    def __init__(self, store: Store, corpus: str) -> None:
        self.store = store
        self.corpus = corpus
        self.data: DataLog[DocumentRecord] = DataLog(store, store.path(corpus, "documents"), DocumentRecord, "", "latest_per_doc", check_part_record)
        self.log = self.data.log
        self.problems: list[Problem] = []

    def state(self) -> LogState[DocumentRecord]:
        return self.data.state(entries=True)

    def current(self, state: LogState[DocumentRecord] | None = None) -> dict[str, DocumentRef]:
        """doc_id -> its latest committed version in a usable part (no Parquet read).

        Problems (unreadable records, missing or truncated parts) are left in `self.problems`."""
        state = state or self.state()
        latest: dict[str, tuple[int, str, str]] = {}
        for doc_id, sha, part, ns in state.entries or []:
            known = latest.get(doc_id)
            if known is None or ns > known[0] or (ns == known[0] and part > known[2]):
                latest[doc_id] = (ns, sha, part)
        self.problems = [*state.problems, *(Problem(self.store.uri(self.log.data_path(f)), why) for f, why in sorted(state.bad.items()))]
        # A latest version in a dropped or bad part hides the older ones: the document is absent
        # (until ingest writes it again), never silently an older text.
        floors = state.floors
        return {doc_id: DocumentRef(doc_id, sha, part) for doc_id, (ns, sha, part) in sorted(latest.items()) if ns > floors.get(part, ns)}

    def read_texts(self, refs: list[DocumentRef]) -> dict[str, str]:
        """Texts of the given document versions, reading each part once; every text is checked
        against its sha256, and a part that fails is named in a StoreError."""
        texts, bad = self.read_texts_checked(refs)
        if bad:
            part, why = next(iter(bad.items()))
            raise StoreError(f"{self.store.uri(self.log.data_path(part))}: {why}")
        return texts

    def read_texts_checked(self, refs: list[DocumentRef]) -> tuple[dict[str, str], dict[str, str]]:
        """(texts of the good documents, part -> what is wrong) for callers that go on without a bad part."""
        by_part: dict[str, set[tuple[str, str]]] = {}
        for ref in refs:
            by_part.setdefault(ref.part, set()).add((ref.doc_id, ref.sha256))
        texts: dict[str, str] = {}
        bad: dict[str, str] = {}
        for part, wanted in by_part.items():
            # Parts are sorted by doc_id in small row groups, so the filter skips row groups by their
            # statistics: a shard reads its own documents, not the whole part.
            ids = sorted({doc_id for doc_id, _ in wanted})
            try:
                table = pq.read_table(
                    self.log.data_path(part), filesystem=self.store.fs, columns=["doc_id", "sha256", "text"], filters=[("doc_id", "in", ids)]
                )
            except FileNotFoundError:
                bad[part] = "committed document part is missing"
                continue
            except (OSError, pa.ArrowException, ValueError) as err:
                bad[part] = f"committed document part cannot be read ({type(err).__name__}: {err})"
                continue
            found = {}
            for doc_id, sha, text in zip(*(table.column(c).to_pylist() for c in ("doc_id", "sha256", "text"))):
                if (doc_id, sha) in wanted and isinstance(text, str) and hashlib.sha256(text.encode("utf-8")).hexdigest() == sha:
                    found[doc_id] = text
            missing = sorted(doc_id for doc_id, _ in wanted if doc_id not in found)
            if missing:
                bad[part] = f"corrupt document part: {len(missing)} document(s) missing or not matching their sha256 (first: {missing[0]!r})"
            else:
                texts.update(found)
        return texts, bad

    def append(self, documents: list[SourceDocument], added: int | None = None) -> str:
        """Write one part holding these documents, then commit it with its checksum. Returns the part name.

        `added`: how many of them are new to the corpus (planning uses it to count without reading)."""
        rows = sorted(documents, key=lambda d: d.doc_id)
        pairs = {d.doc_id: d.sha256 for d in rows}
        part = part_name(pairs)
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
        data = buffer.getvalue()
        self.store.write_bytes(self.log.data_path(part), data)
        fields: dict[str, Any] = {"part": part, "documents": pairs, "files": {part: FileSum.of(data)}}
        if added is not None:
            fields["added"] = added
        self.log.commit(part.removesuffix(".parquet"), fields)
        return part

    def compact_if_needed(self) -> bool:
        """Fold the live records into a snapshot once there are enough of them (writers call this)."""
        if not self.data.needs_compaction():
            return False
        self.data.compact()
        return True


@dataclass
class IngestSummary:
    corpus: str
    documents_added: int = 0
    documents_updated: int = 0
    documents_unchanged: int = 0
    parts_committed: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    problems: list[dict[str, str]] = field(default_factory=list)
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
    state = table.state()
    current = table.current(state)
    summary = IngestSummary(config.corpus, skipped=[s.as_dict() for s in skipped], store=store.uri(table.log.prefix))
    summary.problems = [p.as_dict() for p in table.problems]
    table.data.drop(state.bad)  # missing or truncated parts: their documents are written again below
    pending: list[SourceDocument] = []
    pending_bytes = pending_added = 0
    for doc in sorted(documents, key=lambda d: d.doc_id):
        known = current.get(doc.doc_id)
        if known is not None and known.sha256 == doc.sha256:
            summary.documents_unchanged += 1
            continue
        if known is None:
            summary.documents_added += 1
            pending_added += 1
        else:
            summary.documents_updated += 1
        pending.append(doc)
        pending_bytes += len(doc.text)
        if pending_bytes >= PART_MAX_BYTES:
            table.append(pending, pending_added)
            summary.parts_committed += 1
            pending, pending_bytes, pending_added = [], 0, 0
    if pending:
        table.append(pending, pending_added)
        summary.parts_committed += 1
    table.compact_if_needed()
    return summary
