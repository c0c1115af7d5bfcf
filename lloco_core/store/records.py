"""Commit records as pydantic models: what a record may say, checked before anyone acts on it.

A record read from the store is data from anywhere: a truncated file, `{}`, a wrong field type or a
name such as `../../evil.parquet` must never be trusted. Every record is parsed into one of these
models; a record that does not parse is a `Problem` (its path and why), skipped by readers and
listed by `lloco verify`. Names that become paths (parts, shards, files, record names) must be
plain relative names under their log's prefix, checked here with the same rule as user names.

Format 2 records carry `files`: the size and sha256 of every file the record commits, so readers
verify the bytes they read. Format 1 records (written before checksums) have none: their files
are checked by existence and, once a snapshot recorded their size, by size.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from lloco_core.store.sources import check_doc_id

SEGMENT = re.compile(r"^[A-Za-z0-9_.=-]{1,200}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
RECORD_FORMAT = 2


def check_relative(name: str) -> str:
    """A relative path of plain segments (no '', '.', '..', no absolute path, no scheme)."""
    parts = name.split("/") if isinstance(name, str) else [""]
    if len(parts) > 8 or not all(SEGMENT.match(p) and p not in (".", "..") for p in parts):
        raise ValueError(f"{name!r} is not a plain relative name under the log's prefix")
    return name


def _check_segment(name: str) -> str:
    if not SEGMENT.match(name) or name in (".", ".."):
        raise ValueError(f"{name!r} is not a plain name")
    return name


def _check_sha(value: str) -> str:
    if not SHA256.match(value):
        raise ValueError(f"{value!r} is not a sha256 hex digest")
    return value


ID_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:@+=-/\n"
HEX_BYTES = b"0123456789abcdef\n"
BAD_ID_PARTS = ("//", "\n/", "/\n", "\n\n", "/./", "/../", "\n./", "\n../", "/.\n", "/..\n", "\n.\n", "\n..\n")


def _all_ids_safe(ids: list[str]) -> bool:
    """The rule of `check_doc_id` for many ids at once, with string operations that run in C."""
    joined = "\n" + "\n".join(ids) + "\n"
    try:
        raw = joined.encode("ascii")
    except UnicodeEncodeError:
        return False
    return (
        joined.count("\n") == len(ids) + 1  # no id hides a line break
        and not raw.translate(None, ID_BYTES)
        and not any(part in joined for part in BAD_ID_PARTS)
        and max(map(len, ids), default=0) <= 512
    )


def _all_digests(shas: list[str]) -> bool:
    joined = "\n".join(shas) + "\n" if shas else ""
    try:
        raw = joined.encode("ascii")
    except UnicodeEncodeError:
        return False
    return len(raw) == 65 * len(shas) and raw[64::65] == b"\n" * len(shas) and not raw.translate(None, HEX_BYTES)


def check_document_map(documents: dict[str, str]) -> dict[str, str]:
    """doc_id -> sha256, every id a safe document id and every value a digest. Checked all at once
    (records hold up to hundreds of thousands of documents); the per-id check only names the first
    bad one."""
    if not documents:
        return documents
    ids, shas = list(documents), list(documents.values())
    if all(isinstance(x, str) for x in (*ids[:1], *shas[:1])) and _all_ids_safe(ids) and _all_digests(shas):
        return documents
    for doc_id, sha in documents.items():
        if why := check_doc_id(doc_id):
            raise ValueError(f"document {doc_id!r}: {why}")
        if not (isinstance(sha, str) and SHA256.fullmatch(sha)):
            raise ValueError(f"document {doc_id!r}: {sha!r} is not a sha256 hex digest")
    raise ValueError("document ids or digests are not valid")


RelativeName = Annotated[str, AfterValidator(check_relative)]
SegmentName = Annotated[str, AfterValidator(_check_segment)]
Sha256 = Annotated[str, AfterValidator(_check_sha)]
DocumentMap = Annotated[dict[str, str], AfterValidator(check_document_map)]


class FileSum(BaseModel):
    """Size and sha256 of one committed file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: int = Field(ge=0, description="Bytes.")
    sha256: Sha256 = Field(description="sha256 of the whole file, hex.")

    @classmethod
    def of(cls, data: bytes) -> FileSum:
        return cls(size=len(data), sha256=hashlib.sha256(data).hexdigest())


class Record(BaseModel):
    """What every commit record has: its name and commit time (later wins where records overlap)."""

    model_config = ConfigDict(extra="allow")

    name: SegmentName
    committed_ns: int = Field(ge=0)
    format: int = Field(default=1, ge=1, le=RECORD_FORMAT)


class DataRecord(Record):
    """A record that commits data files holding documents (a document part or an embedding shard).

    `drop` lists files whose entries committed before this record are void (a tombstone written by
    `verify --repair` or by a writer that found the file missing or corrupt)."""

    documents: DocumentMap = Field(default_factory=dict)
    files: dict[RelativeName, FileSum] = Field(default_factory=dict)
    drop: list[RelativeName] = Field(default_factory=list)


class DocumentRecord(DataRecord):
    part: RelativeName | None = None
    added: int | None = Field(default=None, ge=0, description="Documents new to the corpus when written (None: unknown).")


class ShardRecord(DataRecord):
    shard: RelativeName | None = None
    supersedes: DocumentMap = Field(default_factory=dict)
    segments: int = Field(default=0, ge=0)


class AdapterRecord(Record):
    """`adapters/<key>/_commits/adapter.json`: format 1 listed file names, format 2 their checksums."""

    files: dict[RelativeName, FileSum] | list[RelativeName] = Field(default_factory=dict)

    def sums(self) -> dict[str, FileSum]:
        return self.files if isinstance(self.files, dict) else {}


class CheckpointRecord(Record):
    """A committed training checkpoint: the files it names and (format 2) their checksums."""

    step: int = Field(ge=0)
    files: list[RelativeName] = Field(default_factory=list)
    sums: dict[RelativeName, FileSum] = Field(default_factory=dict)


@dataclass(frozen=True)
class Problem:
    """Something in the store that cannot be trusted: the file and what is wrong with it."""

    path: str
    what: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "problem": self.what}

    def __str__(self) -> str:
        return f"{self.path}: {self.what}"


def documents_digest(documents: dict[str, str] | list[tuple[str, str]]) -> str:
    """The content digest that names a document part: its (doc_id, sha256) pairs in doc_id order."""
    pairs = sorted(documents.items() if isinstance(documents, dict) else documents)
    return hashlib.sha256("\n".join(f"{d}\t{s}" for d, s in pairs).encode()).hexdigest()[:20]


def shard_digest(encoder_key: str, documents: dict[str, str] | list[tuple[str, str]]) -> str:
    """The content digest that names an embedding shard: encoder key + its documents in doc_id order."""
    pairs = sorted(documents.items() if isinstance(documents, dict) else documents)
    content = encoder_key + "".join(f"\n{d}\t{s}" for d, s in pairs)
    return hashlib.sha256(content.encode()).hexdigest()[:20]


def describe(error: Exception) -> str:
    """One line for a validation error: the first few field errors, no pydantic URLs."""
    errors = getattr(error, "errors", None)
    if callable(errors):
        parts = []
        for item in errors()[:3]:
            where = ".".join(str(p) for p in item.get("loc", ())) or "record"
            parts.append(f"{where}: {item.get('msg', '')}")
        return "; ".join(parts)
    return f"{type(error).__name__}: {error}"


def as_dict(record: BaseModel) -> dict[str, Any]:
    return record.model_dump(mode="json", exclude_none=True)


class SnapshotFile(BaseModel):
    """One Parquet file of a snapshot, under `<log>/_snapshots/`, with its checksum."""

    model_config = ConfigDict(extra="forbid")

    path: RelativeName
    size: int = Field(ge=0)
    sha256: Sha256
    rows: int = Field(ge=0)


class Reconciled(BaseModel):
    """Which document commits an embeddings snapshot's `pending` list accounts for: everything
    folded into the documents snapshot of `documents_generation`, plus these live records."""

    model_config = ConfigDict(extra="forbid")

    documents_generation: int = Field(ge=0)
    documents_records: list[SegmentName] = Field(default_factory=list)
    documents: int = Field(ge=0, description="Current documents of the corpus at that point.")


class SnapshotRecord(BaseModel):
    """`_snapshots/snap-<generation>.json`, written last: the state of every record in generations
    below `generation`. Its data files are immutable and content-named."""

    model_config = ConfigDict(extra="forbid")

    generation: int = Field(ge=1)
    committed_ns: int = Field(ge=0)
    records: int = Field(ge=0, description="Commit records folded in, over all snapshots.")
    files: SnapshotFile = Field(description="file, size, sha256, committed_ns, record, dropped_ns: one row per committed data file.")
    runs: list[SnapshotFile] = Field(default_factory=list, description="Entries (doc_id, sha256, file, committed_ns), oldest run first.")
    pending: SnapshotFile | None = Field(default=None, description="Embeddings only: current documents without embeddings (doc_id, sha256, part).")
    reconciled: Reconciled | None = None
