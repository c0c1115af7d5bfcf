"""The state of a data log (document parts, embedding shards): which files are committed, with
what checksums, holding which document versions; folded into Parquet snapshots every so often.

State = the newest snapshot + the live records after it (commitlog.py). Folding is order-free, so
reading a record twice (a writer that re-wrote it into a newer generation) changes nothing:
- files: per file name the latest commit (size, sha256, record) wins; a record's `drop` list voids
  the file's entries committed before it (a tombstone: the file was found missing or corrupt);
- entries (doc_id, sha256, file, committed_ns): the consumer picks per document (documents: the
  latest version; embeddings: the first committed copy of each version), among entries whose file
  is live and good.

A committed file is "bad" when one listing of its folder shows it missing or with another size than
committed (truncated, replaced): O(files) names and sizes, no bytes read. Corruption of the same
size is found by readers (which verify sha256 on every read) and `lloco verify`, whose `--repair`
writes the tombstone that the next planning sees.

Snapshots (written by `compact`, every `COMPACT_RECORDS` records or `COMPACT_ENTRIES` entries):
`_snapshots/data/files-<sha>.parquet` (one row per file), runs of entries
`_snapshots/data/run-<sha>.parquet` (a new run per compaction; neighbours merge while the older is
at most twice the newer, so there are O(log n) runs and each entry is rewritten O(log n) times),
then `_snapshots/snap-<generation>.json` last, naming them with sizes and sha256. A killed
compaction leaves files nobody references (vacuum removes them) and the older snapshot in force.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import io
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lloco_core.errors import StoreError
from lloco_core.store.commitlog import SNAPSHOTS, CommitLog, LogView
from lloco_core.store.records import (
    DataRecord,
    FileSum,
    Problem,
    SnapshotFile,
    SnapshotRecord,
    check_relative,
)
from lloco_core.store.sources import DOC_ID_PATTERN
from lloco_core.store.storage import Store

COMPACT_RECORDS = 64
COMPACT_ENTRIES = 100_000
ENTRY_SCHEMA = pa.schema([("doc_id", pa.string()), ("sha256", pa.string()), ("file", pa.string()), ("committed_ns", pa.int64())])
FILE_SCHEMA = pa.schema(
    [("file", pa.string()), ("size", pa.int64()), ("sha256", pa.string()), ("committed_ns", pa.int64()), ("record", pa.string()), ("dropped_ns", pa.int64())]
)
Keep = Literal["latest_per_doc", "first_per_version"]
D = TypeVar("D", bound=DataRecord)


@dataclass
class FileInfo:
    """One committed data file: its latest commit and the newest tombstone against it."""

    file: str
    size: int | None
    sha256: str | None
    committed_ns: int
    record: str
    dropped_ns: int = 0

    @property
    def live(self) -> bool:
        return self.committed_ns > self.dropped_ns

    def sum(self) -> FileSum | None:
        return FileSum(size=self.size, sha256=self.sha256) if self.size is not None and self.sha256 is not None else None


@dataclass
class LogState(Generic[D]):
    """Files (always) and entries (only in a full read) of a data log, plus what was wrong."""

    view: LogView[D]
    files: dict[str, FileInfo]
    entries: list[tuple[str, str, str, int]] | None = None
    problems: list[Problem] = field(default_factory=list)
    bad: dict[str, str] = field(default_factory=dict)  # file -> why (missing, wrong size)

    def usable(self, file: str, committed_ns: int) -> bool:
        floor = self.floors.get(file)
        return floor is not None and committed_ns > floor

    @functools.cached_property
    def floors(self) -> dict[str, int]:
        """Usable file -> the commit time its entries must be newer than (its last tombstone)."""
        return {f: info.dropped_ns for f, info in self.files.items() if info.live and f not in self.bad}


@contextlib.contextmanager
def no_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while folding millions of small tuples (they hold no
    cycles; collections triggered by their allocation only cost time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def file_of(record: DataRecord) -> str | None:
    """The data file a record commits (`part` or `shard`)."""
    return getattr(record, "part", None) or getattr(record, "shard", None)


def apply_record(files: dict[str, FileInfo], record: DataRecord) -> None:
    """Fold one record's file and tombstones into the files map (order-free)."""
    for dropped in record.drop:
        info = files.get(dropped)
        if info is not None:
            info.dropped_ns = max(info.dropped_ns, record.committed_ns)
    data = file_of(record)
    if data is None:
        return
    known = files.get(data)
    if known is None or (record.committed_ns, record.name) > (known.committed_ns, known.record):
        sums = record.files.get(data)
        files[data] = FileInfo(
            data, sums.size if sums else None, sums.sha256 if sums else None, record.committed_ns, record.name, known.dropped_ns if known else 0
        )


def record_entries(record: DataRecord) -> Iterable[tuple[str, str, str, int]]:
    data = file_of(record)
    if data is not None:
        for doc_id, sha in record.documents.items():
            yield doc_id, sha, data, record.committed_ns


def versions_in(records: list[D]) -> set[tuple[str, str]]:
    """(doc_id, sha256) pairs these records commit, less those a tombstone among them voids."""
    files: dict[str, FileInfo] = {}
    for record in records:
        apply_record(files, record)
    held = set()
    for record in records:
        data = file_of(record)
        if data is not None and record.committed_ns > files[data].dropped_ns:
            held.update(record.documents.items())
    return held


def entries_table(records: list[D]) -> pa.Table:
    """The entries of these records as an Arrow table (column by column: no row objects)."""
    columns: dict[str, list[Any]] = {name: [] for name in ENTRY_SCHEMA.names}
    for record in records:
        data = file_of(record)
        if data is None or not record.documents:
            continue
        columns["doc_id"].extend(record.documents.keys())
        columns["sha256"].extend(record.documents.values())
        columns["file"].extend([data] * len(record.documents))
        columns["committed_ns"].extend([record.committed_ns] * len(record.documents))
    return pa.table(columns, schema=ENTRY_SCHEMA)


def parquet_bytes(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd", row_group_size=65536)
    return buffer.getvalue()


def fold_entries(table: pa.Table, keep: Keep, files: dict[str, FileInfo]) -> pa.Table:
    """Keep one entry per document (the latest, even if its file was dropped: it still hides older
    versions) or per version (the first in a usable file: copies are interchangeable); sorted by doc_id."""
    if table.num_rows == 0:
        return table
    if keep == "first_per_version":
        table = _usable_only(table, files)
    if keep == "latest_per_doc":
        keys = ["doc_id"]
        order = pc.sort_indices(table, [("doc_id", "ascending"), ("committed_ns", "descending"), ("file", "descending")])
    else:
        keys = ["doc_id", "sha256"]
        order = pc.sort_indices(table, [("doc_id", "ascending"), ("sha256", "ascending"), ("committed_ns", "ascending"), ("file", "ascending")])
    table = table.take(order)
    if table.num_rows < 2:
        return table
    same = np.ones(table.num_rows - 1, dtype=bool)
    for key in keys:
        values = table[key].combine_chunks()
        same &= pc.equal(values.slice(1), values.slice(0, len(values) - 1)).to_numpy(zero_copy_only=False)
    first = np.ones(table.num_rows, dtype=bool)
    first[1:] = ~same
    return table.filter(pa.array(first))


def _usable_only(table: pa.Table, files: dict[str, FileInfo]) -> pa.Table:
    """Entries whose file is live and committed after the file's last tombstone."""
    names = [f for f, info in files.items() if info.live]
    floors = pa.array([files[f].dropped_ns for f in names], pa.int64())
    index = pc.index_in(table["file"], value_set=pa.array(names, pa.string()))
    usable = pc.and_(pc.is_valid(index), pc.greater(table["committed_ns"], pc.take(floors, pc.fill_null(index, 0)) if names else 0))
    return table.filter(pc.fill_null(usable, False))


class DataLog(Generic[D]):
    """A data log: records of `model`, each committing one data file (`part` or `shard`) in `folder`."""

    def __init__(self, store: Store, prefix: str, model: type[D], folder: str, keep: Keep, check: Callable[[D], str | None] | None = None) -> None:
        self.store = store
        self.log: CommitLog[D] = CommitLog(store, prefix, model, check)
        self.folder = folder  # "" (documents: parts beside the log) or "shards"
        self.keep = keep

    @property
    def prefix(self) -> str:
        return self.log.prefix

    # snapshot files ----------------------------------------------------------------------------
    def read_snapshot_table(self, item: SnapshotFile) -> pa.Table:
        """A snapshot's Parquet file, its bytes checked against the snapshot record first."""
        path = self.log.snapshot_path(item.path)
        data = self.store.read_bytes(path)
        found = FileSum.of(data)
        if (found.size, found.sha256) != (item.size, item.sha256):
            raise StoreError(f"{self.store.uri(path)}: snapshot file does not match its checksum (size {found.size}, expected {item.size})")
        return pq.read_table(pa.BufferReader(data))

    def _write_snapshot_table(self, kind: str, table: pa.Table) -> SnapshotFile:
        data = parquet_bytes(table)
        digest = hashlib.sha256(data).hexdigest()
        name = f"data/{kind}-{digest[:24]}.parquet"
        self.store.write_bytes(self.log.snapshot_path(name), data)
        return SnapshotFile(path=name, size=len(data), sha256=digest, rows=table.num_rows)

    def _snapshot_files(self, snapshot: SnapshotRecord) -> dict[str, FileInfo]:
        table = self.read_snapshot_table(snapshot.files)
        files = {}
        for row in table.to_pylist():
            name = check_relative(row["file"])
            files[name] = FileInfo(name, row["size"], row["sha256"], row["committed_ns"], row["record"], row["dropped_ns"] or 0)
        return files

    # state -------------------------------------------------------------------------------------
    def state(self, entries: bool = False, check_files: bool = True) -> LogState[D]:
        """Files (and with `entries`, every entry) of the newest usable snapshot plus live records.

        A snapshot whose files cannot be read is reported and an older one used instead."""
        with no_gc():
            return self._state(entries, check_files)

    def _state(self, entries: bool, check_files: bool) -> LogState[D]:
        skip, problems = 0, []
        while True:
            view = self.log.view(skip_snapshots=skip)
            try:
                files = self._snapshot_files(view.snapshot) if view.snapshot else {}
                rows: list[tuple[str, str, str, int]] | None = None
                if entries:
                    rows = []
                    for run in view.snapshot.runs if view.snapshot else []:
                        rows.extend(self._run_rows(run))
                break
            except (OSError, StoreError, ValueError, pa.ArrowException) as err:
                assert view.snapshot is not None  # nothing else is read before the records
                skip += 1
                problems.append(Problem(self.log.snapshot_path(f"snap-{view.snapshot.generation:06d}.json"), f"snapshot unusable, using an older state: {err}"))
        problems = [*problems, *view.problems]
        for record in view.records:
            apply_record(files, record)
            if rows is not None:
                rows.extend(record_entries(record))
        state = LogState(view, files, rows, problems)
        if check_files:
            state.bad = self.check_files(files)
        return state

    def _run_rows(self, run: SnapshotFile) -> list[tuple[str, str, str, int]]:
        table = self.read_snapshot_table(run)
        bad_ids = pc.invert(pc.match_substring_regex(table["doc_id"], DOC_ID_PATTERN.pattern))
        if pc.any(bad_ids).as_py() or pc.any(pc.match_substring(table["doc_id"], "..")).as_py():
            raise StoreError(f"{self.log.snapshot_path(run.path)}: snapshot holds unsafe document ids")
        return list(zip(*(table[c].to_pylist() for c in ("doc_id", "sha256", "file", "committed_ns"))))

    def listing(self) -> dict[str, int]:
        """Data file name (relative to the log) -> size, from one listing of the data folder."""
        folder = f"{self.prefix}/{self.folder}" if self.folder else self.prefix
        cut = len(self.prefix) + 1
        return {path[cut:]: size for path, size in self.store.list_sizes(folder).items() if path.endswith(".parquet")}

    def check_files(self, files: dict[str, FileInfo], listing: dict[str, int] | None = None) -> dict[str, str]:
        """Live committed files that are missing or have another size than committed."""
        listing = self.listing() if listing is None else listing
        bad = {}
        for name, info in files.items():
            if not info.live:
                continue
            size = listing.get(name)
            if size is None:
                bad[name] = "committed file is missing"
            elif info.size is not None and size != info.size:
                bad[name] = f"committed file has {size} bytes, its commit record says {info.size} (truncated or replaced)"
        return bad

    # verified reads ----------------------------------------------------------------------------
    def read_verified(self, file: str, info: FileInfo | None) -> bytes:
        """A committed file's bytes, checked against its recorded size and sha256 (StoreError names it)."""
        path = self.log.data_path(file)
        try:
            data = self.store.read_bytes(path)
        except FileNotFoundError:
            raise StoreError(f"{self.store.uri(path)}: committed file is missing (run `lloco verify --repair`, then compress or ingest again)") from None
        if info is not None and info.size is not None and len(data) != info.size:
            raise StoreError(f"{self.store.uri(path)}: {len(data)} bytes, its commit record says {info.size} (truncated or replaced)")
        if info is not None and info.sha256 is not None and hashlib.sha256(data).hexdigest() != info.sha256:
            raise StoreError(f"{self.store.uri(path)}: bytes do not match the sha256 in its commit record (corrupt; run `lloco verify --repair`)")
        return data

    def holds(self, name: str) -> bool:
        """Whether the record `name` is in force: its file committed, not dropped, there at its size."""
        state = self.state()
        return any(info.record == name and info.live and file not in state.bad for file, info in state.files.items())

    # tombstones --------------------------------------------------------------------------------
    def drop(self, files: dict[str, str], name_prefix: str = "drop") -> None:
        """Commit a tombstone for files found missing or corrupt: their entries no longer count."""
        if not files:
            return
        digest = hashlib.sha256("\n".join(sorted(files)).encode()).hexdigest()[:12]
        self.log.commit(f"{name_prefix}-{time.time_ns()}-{digest}", {"drop": sorted(files), "reasons": dict(sorted(files.items()))})

    # compaction --------------------------------------------------------------------------------
    def needs_compaction(self, view: LogView[D] | None = None) -> bool:
        view = view or self.log.view()
        return len(view.records) >= COMPACT_RECORDS or sum(len(r.documents) for r in view.records) >= COMPACT_ENTRIES

    def compact(self, extra: Callable[[LogState[D]], dict[str, Any]] | None = None) -> SnapshotRecord:
        """Seal the open generation, fold everything before it into a new snapshot, commit it last.

        `extra` adds log-specific parts (the embeddings' pending list) computed from the folded state."""
        generation = self.log.open_next_generation()
        state = self.state(entries=False, check_files=False)
        sealed = [r for r in state.view.records if not state.view.paths[r.name].startswith(self.log.generation_folder(generation) + "/")]
        files = self._snapshot_files(state.view.snapshot) if state.view.snapshot else {}
        for record in sealed:
            apply_record(files, record)
        new_run = fold_entries(entries_table(sealed), self.keep, files)
        runs = list(state.view.snapshot.runs) if state.view.snapshot else []
        tables: list[pa.Table | SnapshotFile] = [*runs, new_run]
        while len(tables) >= 2 and _rows(tables[-2]) <= 2 * max(_rows(tables[-1]), 1):
            newer, older = tables.pop(), tables.pop()
            merged = pa.concat_tables([self._as_table(older), self._as_table(newer)])
            tables.append(fold_entries(merged, self.keep, files))
        kept_files = files if self.keep == "latest_per_doc" else {f: i for f, i in files.items() if i.live}
        files_table = pa.Table.from_pylist(
            [
                {"file": i.file, "size": i.size, "sha256": i.sha256, "committed_ns": i.committed_ns, "record": i.record, "dropped_ns": i.dropped_ns}
                for i in sorted(kept_files.values(), key=lambda i: i.file)
            ],
            schema=FILE_SCHEMA,
        )
        written = [t if isinstance(t, SnapshotFile) else self._write_snapshot_table("run", t) for t in tables if _rows(t) > 0]
        folded = (state.view.snapshot.records if state.view.snapshot else 0) + len(sealed)
        fields = extra(LogState(state.view, kept_files)) if extra else {}
        snapshot = SnapshotRecord(
            generation=generation,
            committed_ns=time.time_ns(),
            records=folded,
            files=self._write_snapshot_table("files", files_table),
            runs=written,
            **fields,
        )
        self.store.write_json(self.log.snapshot_path(f"snap-{generation:06d}.json"), snapshot.model_dump(mode="json", exclude_none=True))
        self._prune_snapshot_records(generation)
        return snapshot

    def write_pending(self, table: pa.Table) -> SnapshotFile:
        return self._write_snapshot_table("pending", table)

    def _as_table(self, item: pa.Table | SnapshotFile) -> pa.Table:
        return item if isinstance(item, pa.Table) else self.read_snapshot_table(item)

    def _prune_snapshot_records(self, generation: int) -> None:
        """Keep the two newest snapshots (a fallback if the newest goes bad) and markers from the older one on."""
        snapshots, _ = self.log.generations()
        keep_from = snapshots[1] if len(snapshots) > 1 else generation
        for path in self.store.list(f"{self.prefix}/{SNAPSHOTS}", ".json"):
            number = path.rsplit("-", 1)[-1].removesuffix(".json")
            if number.isdigit() and int(number) < keep_from:
                self.store.delete(path)


def _rows(item: pa.Table | SnapshotFile) -> int:
    return item.num_rows if isinstance(item, pa.Table) else item.rows
