"""Read documents from where users keep them: a folder of .txt/.md, JSONL, Parquet, any fsspec URL.

Each bad item (unreadable file, line without text, unsafe id) becomes a `Skipped` entry naming the
item and the reason, so one bad file never stops a nightly run and nothing is silently dropped.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import fsspec
import pyarrow.parquet as pq

from lloco_core.errors import InputError

TEXT_SUFFIXES = (".txt", ".md")
DOC_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:@+=-]+(/[A-Za-z0-9_.:@+=-]+)*$")


@dataclass(frozen=True)
class SourceDocument:
    doc_id: str
    text: str
    source: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Skipped:
    item: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"item": self.item, "reason": self.reason}


def check_doc_id(doc_id: Any) -> str | None:
    """Why a document id is unusable, or None. Ids are data, but must never look like a path escape."""
    if not isinstance(doc_id, str) or not doc_id:
        return "document id must be a non-empty string"
    if len(doc_id) > 512:
        return "document id is longer than 512 characters"
    if not DOC_ID_PATTERN.match(doc_id) or any(p in (".", "..") for p in doc_id.split("/")):
        return f"document id {doc_id!r} is not allowed: use letters, digits and . _ - : @ + = with '/' between parts, no '.' or '..' parts"
    return None


def _document(doc_id: Any, text: Any, source: str, metadata: Any) -> SourceDocument | Skipped:
    if isinstance(doc_id, int) and not isinstance(doc_id, bool):
        doc_id = str(doc_id)  # numeric ids are common in JSONL/Parquet exports
    item = f"{source} (id {doc_id!r})"
    if (why := check_doc_id(doc_id)) is not None:
        return Skipped(source, why)
    if not isinstance(text, str):
        return Skipped(item, "'text' must be a string")
    if not text.strip():
        return Skipped(item, "document is empty")
    if metadata is not None and not isinstance(metadata, dict):
        return Skipped(item, "'metadata' must be an object")
    return SourceDocument(doc_id, text, source, dict(metadata or {}))


def _read_text_file(fs: fsspec.AbstractFileSystem, path: str, doc_id: str, url: str) -> SourceDocument | Skipped:
    try:
        text = fs.cat_file(path).decode("utf-8")
    except UnicodeDecodeError as err:
        return Skipped(url, f"file is not UTF-8 text (byte {err.start}: {err.reason})")
    return _document(doc_id, text, url, {})


def _read_jsonl(fs: fsspec.AbstractFileSystem, path: str, url: str) -> Iterator[SourceDocument | Skipped]:
    with fs.open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            where = f"{url}:{number}"
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as err:
                yield Skipped(where, f"line is not valid UTF-8 JSON ({err})")
                continue
            if not isinstance(row, dict):
                yield Skipped(where, "line is not a JSON object")
                continue
            if "text" not in row:
                yield Skipped(where, "line has no 'text' field")
                continue
            yield _document(row.get("id"), row["text"], where, row.get("metadata"))


def _read_parquet(fs: fsspec.AbstractFileSystem, path: str, url: str) -> Iterator[SourceDocument | Skipped]:
    table = pq.read_table(path, filesystem=fs)
    id_column = "doc_id" if "doc_id" in table.column_names else "id"
    if id_column not in table.column_names or "text" not in table.column_names:
        raise InputError(f"{url}: a Parquet source needs columns 'id' (or 'doc_id') and 'text'; it has {table.column_names}")
    has_metadata = "metadata" in table.column_names
    for index, row in enumerate(table.to_pylist()):
        metadata = row.get("metadata") if has_metadata else None
        if isinstance(metadata, str):
            metadata = json.loads(metadata or "{}")
        yield _document(row[id_column], row["text"], f"{url}#row={index}", metadata)


def read_source(source: str, storage_options: dict[str, Any] | None = None) -> Iterator[SourceDocument | Skipped]:
    """Yield documents and skips from a folder, .jsonl/.parquet/.txt/.md file, local or remote."""
    fs, root = fsspec.core.url_to_fs(source, **(storage_options or {}))
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]

    def url(path: str) -> str:
        return path if protocol in ("file", "local") else f"{protocol}://{path}"

    if not fs.exists(root):
        raise InputError(f"source {source!r} does not exist")
    if fs.isdir(root):
        files = sorted(p for p in fs.find(root) if p.endswith((*TEXT_SUFFIXES, ".jsonl", ".parquet")))
        if not files:
            raise InputError(f"source folder {source!r} holds no .txt, .md, .jsonl or .parquet files")
    else:
        files = [root]
    for path in files:
        if path.endswith(".jsonl"):
            yield from _read_jsonl(fs, path, url(path))
        elif path.endswith(".parquet"):
            yield from _read_parquet(fs, path, url(path))
        elif path.endswith(TEXT_SUFFIXES):
            relative = path[len(root):].lstrip("/") if path != root else path.rsplit("/", 1)[-1]
            yield _read_text_file(fs, path, relative.rsplit(".", 1)[0], url(path))
        else:
            raise InputError(f"source file {url(path)!r} is not .txt, .md, .jsonl or .parquet")
