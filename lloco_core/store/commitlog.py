"""Data files made visible by commit records written last (the store's only source of truth).

A writer puts a data file at a name derived from its content (a retry overwrites, never
duplicates), then writes a small JSON commit record. Readers list commit records only, so a crash
between the two leaves an orphan file nobody reads, and the store stays at its last commit.

Layout of one log under `<prefix>/`:

    _commits/<name>.json               generation 0 (also every record written before generations)
    _commits/g000003/<name>.json       generation 3
    _snapshots/gen-000003.json         generation 3 is open: writers commit into it
    _snapshots/snap-000003.json        the state of every record in generations < 3 (snapshots.py)

Why generations: listing stays cheap. A snapshot folds every sealed generation, so a reader lists
only the generations from the newest snapshot on (one or two small folders), whatever the size of
the history; fsspec has no `start_after`, but a folder per generation is a prefix listing.

Sealing is race-free without locks or conditional writes. A compaction first writes the marker of
the next generation, then lists the sealed ones. A writer writes its record into the newest open
generation, then lists the markers again: if a newer marker appeared meanwhile, the compaction may
have listed the old generation before the record landed, so the writer writes the same record into
the new generation too (readers drop duplicate names; folding is idempotent). Otherwise the
compaction's listing, which follows its marker, follows the record too, and sees it.

Tolerance: a record that cannot be read or does not validate (truncated JSON, `{}`, a wrong field
type, a name leaving the prefix) is a `Problem` naming its path; readers skip it and go on.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import ValidationError

from lloco_core.store.records import (
    RECORD_FORMAT,
    Problem,
    Record,
    SnapshotRecord,
    check_relative,
    describe,
)
from lloco_core.store.storage import Store

COMMITS = "_commits"
SNAPSHOTS = "_snapshots"
QUARANTINE = "_quarantine"
MARKER = re.compile(r"^gen-(\d{6})\.json$")
SNAPSHOT = re.compile(r"^snap-(\d{6})\.json$")
GENERATION_DIR = re.compile(r"^g(\d{6})$")
MAX_LIVE_GENERATIONS = 64
"""Generations a reader lists after its snapshot; more means markers nobody compacted (reported)."""

R = TypeVar("R", bound=Record)


@dataclass
class LogView(Generic[R]):
    """What a reader sees: the newest readable snapshot (if any) plus the live records after it."""

    snapshot: SnapshotRecord | None
    records: list[R]
    problems: list[Problem] = field(default_factory=list)
    generations: tuple[int, ...] = ()
    paths: dict[str, str] = field(default_factory=dict)  # record name -> where it was read
    files_read: int = 0  # records and snapshot commits fetched: what planning costs

    @property
    def names(self) -> set[str]:
        return {r.name for r in self.records}


class CommitLog(Generic[R]):
    """Commit records of one log, read in commit order, validated with `model` (and `check`)."""

    def __init__(self, store: Store, prefix: str, model: type[R] = Record, check: Callable[[R], str | None] | None = None) -> None:
        self.store = store
        self.prefix = prefix
        self.model = model
        self.check = check

    # paths -------------------------------------------------------------------------------------
    def data_path(self, name: str) -> str:
        """A data file of this log; names from records are checked so they never leave the prefix."""
        return f"{self.prefix}/{check_relative(name)}"

    def generation_folder(self, generation: int) -> str:
        return f"{self.prefix}/{COMMITS}" if generation == 0 else f"{self.prefix}/{COMMITS}/g{generation:06d}"

    def record_path(self, name: str, generation: int = 0) -> str:
        return f"{self.generation_folder(generation)}/{check_relative(name)}.json"

    def snapshot_path(self, name: str) -> str:
        return f"{self.prefix}/{SNAPSHOTS}/{check_relative(name)}"

    # generations -------------------------------------------------------------------------------
    def generations(self) -> tuple[list[int], int]:
        """(snapshot generations, newest first; the newest open generation) from one listing."""
        snapshots, newest = [], 0
        for path in self.store.list(f"{self.prefix}/{SNAPSHOTS}", ".json"):
            name = path.rsplit("/", 1)[-1]
            if m := MARKER.match(name):
                newest = max(newest, int(m.group(1)))
            elif m := SNAPSHOT.match(name):
                snapshots.append(int(m.group(1)))
        snapshots.sort(reverse=True)
        return snapshots, max([newest, *snapshots[:1]])

    def open_generation(self) -> int:
        return self.generations()[1]

    # writing -----------------------------------------------------------------------------------
    def commit(self, name: str, fields: dict[str, Any]) -> R:
        """Validate, then write the record last, into the open generation (see the module docstring)."""
        record = self.model.model_validate({**fields, "name": name, "committed_ns": time.time_ns(), "format": RECORD_FORMAT})
        data = json.dumps(record.model_dump(mode="json", exclude_none=True), indent=1, sort_keys=True).encode()
        generation = self.open_generation()
        while True:
            self.store.write_bytes(self.record_path(name, generation), data)
            now = self.open_generation()
            if now <= generation:
                return record
            generation = now

    def open_next_generation(self) -> int:
        """Seal the open generation (compaction's first step); returns the new open generation."""
        new = self.open_generation() + 1
        self.store.write_json(self.snapshot_path(f"gen-{new:06d}.json"), {"generation": new, "opened_ns": time.time_ns()})
        return new

    # reading -----------------------------------------------------------------------------------
    def parse(self, path: str, raw: bytes | Exception) -> R | Problem:
        """One record from its bytes, or the problem with it."""
        if isinstance(raw, Exception):
            return Problem(path, f"commit record cannot be read ({type(raw).__name__}: {raw})")
        try:
            value = json.loads(raw)
        except (ValueError, RecursionError) as err:
            return Problem(path, f"commit record is not valid JSON ({err})")
        if not isinstance(value, dict):
            return Problem(path, "commit record is not a JSON object")
        try:
            record = self.model.model_validate(value)
        except ValidationError as err:
            return Problem(path, f"invalid commit record: {describe(err)}")
        if record.name != path.rsplit("/", 1)[-1].removesuffix(".json"):
            return Problem(path, f"commit record names itself {record.name!r}, not its file name")
        if self.check is not None and (why := self.check(record)):
            return Problem(path, f"invalid commit record: {why}")
        return record

    def read_records(self, paths: list[str]) -> tuple[list[tuple[str, R]], list[Problem]]:
        """(path, record) for every readable record, and the problems with the others."""
        records, problems = [], []
        for path, raw in self.store.read_many(paths).items():
            parsed = self.parse(path, raw)
            if isinstance(parsed, Problem):
                problems.append(parsed)
            else:
                records.append((path, parsed))
        return records, problems

    def read_snapshot(self, generation: int) -> SnapshotRecord | Problem:
        path = self.snapshot_path(f"snap-{generation:06d}.json")
        try:
            snapshot = SnapshotRecord.model_validate_json(self.store.read_bytes(path))
        except (OSError, ValueError) as err:
            return Problem(path, f"snapshot record cannot be used ({describe(err)})")
        if snapshot.generation != generation:
            return Problem(path, f"snapshot record says generation {snapshot.generation}, not {generation}")
        return snapshot

    def view(self, skip_snapshots: int = 0, cache: dict[str, R] | None = None) -> LogView[R]:
        """The newest readable snapshot plus every live record (deduplicated, oldest first).

        An unreadable snapshot is reported and the next older one is used: snapshots only cache
        what the records say, so falling back loses nothing. `cache` (path -> record) spares
        fetching records already read: a record never changes once written."""
        snapshots, newest = self.generations()
        problems: list[Problem] = []
        snapshot, files_read = None, 0
        for generation in snapshots[skip_snapshots:]:
            found = self.read_snapshot(generation)
            files_read += 1
            if isinstance(found, Problem):
                problems.append(found)
                continue
            snapshot = found
            break
        first = snapshot.generation if snapshot else 0
        if newest - first >= MAX_LIVE_GENERATIONS:
            problems.append(Problem(self.snapshot_path(f"gen-{newest:06d}.json"), f"{newest - first} generations after the newest snapshot; reading the first {MAX_LIVE_GENERATIONS}"))
            newest = first + MAX_LIVE_GENERATIONS - 1
        generations = tuple(range(first, newest + 1))
        paths = [p for g in generations for p in self.store.list(self.generation_folder(g), ".json")]
        cache = {} if cache is None else cache
        fetch = [p for p in paths if p not in cache]
        records, bad = self.read_records(fetch)
        cache.update(records)
        records = [(p, cache[p]) for p in paths if p in cache]
        problems += bad
        by_name: dict[str, R] = {}
        where: dict[str, str] = {}
        for path, record in records:
            kept = by_name.get(record.name)
            if kept is None or (record.committed_ns, path) > (kept.committed_ns, where[record.name]):
                by_name[record.name], where[record.name] = record, path
        ordered = sorted(by_name.values(), key=lambda r: (r.committed_ns, r.name))
        return LogView(snapshot, ordered, problems, generations, where, files_read + len(fetch))

    def records(self) -> list[R]:
        """Live records, oldest first (problems skipped: use `view()` to see them)."""
        return self.view().records

    def find(self, name: str) -> tuple[R, str] | None:
        """The live record called `name` and its path, by direct reads (no listing of records)."""
        snapshots, newest = self.generations()
        first = snapshots[0] if snapshots else 0
        for generation in range(newest, first - 1, -1):
            path = self.record_path(name, generation)
            try:
                raw: bytes | Exception = self.store.read_bytes(path)
            except FileNotFoundError:
                continue
            except OSError as err:
                raw = err
            parsed = self.parse(path, raw)
            return None if isinstance(parsed, Problem) else (parsed, path)
        return None

    def is_committed(self, name: str) -> bool:
        return self.find(name) is not None

    def quarantine(self, path: str) -> str:
        """Move a record or data file of this log out of the way (kept for inspection; vacuum purges)."""
        relative = path[len(self.prefix) + 1 :] if path.startswith(self.prefix + "/") else path.rsplit("/", 1)[-1]
        target = f"{self.prefix}/{QUARANTINE}/{time.time_ns()}-{relative.replace('/', '--')}"
        self.store.move(path, target)
        return target
