"""Read documents from where users keep them: a folder of .txt/.md, JSONL, Parquet, any fsspec URL.

Each bad item becomes a `Skipped` entry naming the item (file, `file:line`, `file#row=N`) and the
reason, so one bad item never stops a nightly run and nothing is silently dropped: a file that is
not UTF-8, a JSONL line that is not JSON or nests too deep, text with a lone surrogate, a corrupt
or unreadable file inside a folder, a Parquet metadata cell that is not JSON, an unsafe id, a
symbolic link that leaves the source folder. Only a source that cannot be opened at all (it does
not exist, it cannot be listed, a single named file cannot be read) stops the run, with an InputError.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import fsspec
import pyarrow.parquet as pq

from lloco_core.errors import InputError
from lloco_core.unicode_text import lone_surrogate

TEXT_SUFFIXES = (".txt", ".md")
SOURCE_SUFFIXES = (*TEXT_SUFFIXES, ".jsonl", ".parquet")
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


def _metadata_problem(metadata: Any) -> str | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        return "'metadata' must be an object"
    try:
        json.dumps(metadata, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError, RecursionError) as err:
        return f"'metadata' is not plain JSON ({type(err).__name__}: {str(err)[:200]})"
    return None


def _document(doc_id: Any, text: Any, source: str, metadata: Any) -> SourceDocument | Skipped:
    if isinstance(doc_id, int) and not isinstance(doc_id, bool):
        doc_id = str(doc_id)  # numeric ids are common in JSONL/Parquet exports
    if (why := check_doc_id(doc_id)) is not None:
        return Skipped(source, why)
    item = f"{source} (id {doc_id!r})"
    if not isinstance(text, str):
        return Skipped(item, "'text' must be a string")
    if not text.strip():
        return Skipped(item, "document is empty")
    if (why := lone_surrogate(text)) is not None:
        return Skipped(item, f"text {why}")
    if (why := _metadata_problem(metadata)) is not None:
        return Skipped(item, why)
    return SourceDocument(doc_id, text, source, dict(metadata or {}))


def _read_text_file(fs: fsspec.AbstractFileSystem, path: str, doc_id: str, url: str) -> SourceDocument | Skipped:
    try:
        text = fs.cat_file(path).decode("utf-8")
    except UnicodeDecodeError as err:
        return Skipped(url, f"file is not UTF-8 text (byte {err.start}: {err.reason})")
    return _document(doc_id, text, url, {})


def _jsonl_line(raw: bytes, where: str) -> SourceDocument | Skipped | None:
    if not raw.strip():
        return None
    try:
        row = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        return Skipped(where, f"line is not valid UTF-8 JSON ({err})")
    except RecursionError:
        return Skipped(where, "line is nested too deeply to read as JSON")
    if not isinstance(row, dict):
        return Skipped(where, "line is not a JSON object")
    if "text" not in row:
        return Skipped(where, "line has no 'text' field")
    if "id" not in row and "doc_id" not in row:
        return Skipped(where, "line has no 'id' (or 'doc_id') field")
    return _document(row["id"] if "id" in row else row["doc_id"], row["text"], where, row.get("metadata"))


def _read_jsonl(fs: fsspec.AbstractFileSystem, path: str, url: str) -> Iterator[SourceDocument | Skipped]:
    with fs.open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if (item := _jsonl_line(raw, f"{url}:{number}")) is not None:
                yield item


def _parquet_metadata(value: Any) -> Any:
    """A metadata cell: a JSON object as text (as lloco writes it) or a struct/map column."""
    if isinstance(value, str):
        return json.loads(value or "{}")
    if isinstance(value, list) and all(isinstance(p, tuple) and len(p) == 2 for p in value):
        return dict(value)  # a Parquet map column
    return value


def _read_parquet(fs: fsspec.AbstractFileSystem, path: str, url: str) -> Iterator[SourceDocument | Skipped]:
    table = pq.read_table(path, filesystem=fs)
    id_column = "doc_id" if "doc_id" in table.column_names else "id"
    if id_column not in table.column_names or "text" not in table.column_names:
        raise InputError(f"{url}: a Parquet source needs columns 'id' (or 'doc_id') and 'text'; it has {table.column_names}")
    has_metadata = "metadata" in table.column_names
    for index, row in enumerate(table.to_pylist()):
        where = f"{url}#row={index}"
        try:
            metadata = _parquet_metadata(row.get("metadata")) if has_metadata else None
        except (ValueError, RecursionError) as err:
            yield Skipped(where, f"'metadata' cell is not a JSON object ({type(err).__name__}: {str(err)[:200]})")
            continue
        yield _document(row[id_column], row["text"], where, metadata)


def _read_file(fs: fsspec.AbstractFileSystem, path: str, url: str, doc_id: str) -> Iterator[SourceDocument | Skipped]:
    if path.endswith(".jsonl"):
        yield from _read_jsonl(fs, path, url)
    elif path.endswith(".parquet"):
        yield from _read_parquet(fs, path, url)
    else:
        yield _read_text_file(fs, path, doc_id, url)


def _file_error(err: Exception) -> str:
    import pyarrow as pa

    if isinstance(err, InputError):
        return str(err).split(": ", 1)[-1]
    if isinstance(err, pa.ArrowException):
        return f"not a readable Parquet file ({type(err).__name__}: {str(err)[:200]})"
    return f"cannot read the file ({type(err).__name__}: {str(err)[:200]})"


def _confined_files(root: str) -> tuple[list[str], list[Skipped]]:
    """Source files under a local folder, never leaving it: symbolic links whose target lies
    outside the folder are skipped and listed (a link to /etc/hostname is not a document)."""
    base = os.path.realpath(root)
    files: list[str] = []
    skipped: list[Skipped] = []

    def unreadable(err: OSError) -> None:
        skipped.append(Skipped(str(err.filename), f"cannot list the folder ({type(err).__name__}: {err.strerror})"))

    for folder, dirs, names in os.walk(root, onerror=unreadable):
        for name in sorted(dirs):
            path = os.path.join(folder, name)
            if os.path.islink(path) and os.path.commonpath([base, os.path.realpath(path)]) != base:
                skipped.append(Skipped(path, "symbolic link to a folder outside the source folder: not followed"))
        for name in sorted(names):
            path = os.path.join(folder, name)
            if not name.endswith(SOURCE_SUFFIXES):
                continue
            if os.path.islink(path) and os.path.commonpath([base, os.path.realpath(path)]) != base:
                skipped.append(Skipped(path, "symbolic link to a file outside the source folder: not read"))
            elif not os.path.isfile(path):  # a FIFO or device would block or never end
                skipped.append(Skipped(path, "not a regular file: not read"))
            else:
                files.append(path)
    return sorted(files), skipped


def read_source(source: str, storage_options: dict[str, Any] | None = None) -> Iterator[SourceDocument | Skipped]:
    """Yield documents and skips from a folder, .jsonl/.parquet/.txt/.md file, local or remote."""
    try:
        fs, root = fsspec.core.url_to_fs(source, **(storage_options or {}))
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        local = protocol in ("file", "local")
        exists, is_dir = fs.exists(root), fs.isdir(root)
    except (ValueError, ImportError, OSError) as err:
        raise InputError(f"source {source!r} cannot be opened ({type(err).__name__}: {err})") from None

    def url(path: str) -> str:
        return path if local else f"{protocol}://{path}"

    if not exists:
        raise InputError(f"source {source!r} does not exist")
    if not is_dir:
        if not root.endswith(SOURCE_SUFFIXES):
            raise InputError(f"source file {url(root)!r} is not .txt, .md, .jsonl or .parquet")
        try:  # the one file named: if it cannot be read, there is no source
            yield from list(_read_file(fs, root, url(root), root.rsplit("/", 1)[-1].rsplit(".", 1)[0]))
        except Exception as err:
            raise InputError(f"source {url(root)!r}: {_file_error(err)}") from None
        return
    skipped: list[Skipped] = []
    if local:
        files, skipped = _confined_files(root)
    else:
        try:
            files = sorted(p for p in fs.find(root) if p.endswith(SOURCE_SUFFIXES))
        except OSError as err:
            raise InputError(f"source folder {source!r} cannot be listed ({type(err).__name__}: {err})") from None
    if not files and not skipped:
        raise InputError(f"source folder {source!r} holds no .txt, .md, .jsonl or .parquet files")
    yield from skipped
    for path in files:
        relative = path[len(root) :].lstrip("/")
        try:  # a file is read whole before its items count, so a file that fails midway adds nothing
            items = list(_read_file(fs, path, url(path), relative.rsplit(".", 1)[0]))
        except Exception as err:  # one unreadable file never stops the folder
            items = [Skipped(url(path), _file_error(err))]
        yield from items
