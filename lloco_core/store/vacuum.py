"""`lloco vacuum`: remove what killed or finished runs left behind, never anything committed or in flight.

Removed, once older than the grace period (default 1 h):
- temporary files (`.tmp-*`) of interrupted local writes, anywhere in the corpus;
- data files (document parts, shards) that no commit record references: orphans of runs killed
  between writing a file and committing it, and files dropped by a tombstone;
- snapshot data files no kept snapshot names, and quarantined files;
- expired leases, and training checkpoint folders without a commit record.

Never removed: commit records (the source of truth; snapshots only cache them), anything a record
or a kept snapshot references, a shard a live lease names, anything younger than the grace period
(a write in flight has not committed yet). The state is read again right before deleting, so a
file committed meanwhile stays.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from lloco_core.errors import InputError
from lloco_core.store.commitlog import QUARANTINE, SNAPSHOTS, CommitLog
from lloco_core.store.datalog import DataLog
from lloco_core.store.documents import DocumentTable
from lloco_core.store.embeddings import EmbeddingStore
from lloco_core.store.leases import LEASES, Leases
from lloco_core.store.records import SnapshotRecord
from lloco_core.store.storage import TMP_PREFIX, Store, entry_mtime
from lloco_core.training.checkpoints import AdapterStore, CompressorStore, TrainedRun, step_tag

DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """'90s', '30m', '1h', '2d' or plain seconds -> seconds."""
    match = DURATION.match(text)
    if not match:
        raise InputError(f"duration {text!r} is not understood: use e.g. 90s, 30m, 1h or 2d")
    return float(match.group(1)) * UNITS[match.group(2)]


@dataclass
class VacuumReport:
    corpus: str
    older_than_s: float
    dry_run: bool
    removed: list[dict[str, str]] = field(default_factory=list)
    kept_young: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"corpus": self.corpus, "older_than_s": self.older_than_s, "dry_run": self.dry_run, "removed": self.removed, "files_removed": len(self.removed), "kept_young": self.kept_young}


class Vacuum:
    def __init__(self, store: Store, corpus: str, older_than_s: float, dry_run: bool) -> None:
        self.store = store
        self.corpus = corpus
        self.cutoff = time.time() - older_than_s
        self.dry_run = dry_run
        self.report = VacuumReport(corpus, older_than_s, dry_run)

    def old(self, entry: dict[str, Any]) -> bool:
        mtime = entry_mtime(entry)
        if mtime is None or mtime > self.cutoff:
            self.report.kept_young += 1
            return False
        return True

    def remove(self, path: str, why: str) -> None:
        self.report.removed.append({"path": self.store.uri(path), "why": why})
        if not self.dry_run:
            self.store.delete(path)

    def files(self, folder: str) -> Iterator[dict[str, Any]]:
        for entry in self.store.list_detail(folder):
            if entry.get("type") != "directory":
                yield entry

    # one pass per kind ---------------------------------------------------------------------------
    def temporary_files(self) -> None:
        try:
            found = self.store.fs.find(self.store.path(self.corpus), detail=True)
        except FileNotFoundError:
            return
        for path, entry in sorted(found.items()):
            if path.rsplit("/", 1)[-1].startswith(TMP_PREFIX) and self.old(entry):
                self.remove(path, "temporary file of an interrupted write")

    def data_log(self, data: DataLog[Any], in_flight: set[str] = frozenset()) -> None:
        folder = f"{data.prefix}/{data.folder}" if data.folder else data.prefix
        candidates = [e for e in self.files(folder) if e["name"].endswith(".parquet") and self.old(e)]
        if candidates:
            state = data.state(check_files=False)  # read after listing: a file committed meanwhile is referenced
            referenced = {f for f, info in state.files.items() if info.live}
            # the file of a record that does not validate may still be recovered by `verify --repair`
            unsure = {p.path.rsplit("/", 1)[-1].removesuffix(".json") for p in state.problems}
            referenced |= {f"{data.folder}/{n}.parquet" if data.folder else f"{n}.parquet" for n in unsure}
            cut = len(data.prefix) + 1
            for entry in candidates:
                name = entry["name"][cut:]
                if name not in referenced and name not in in_flight:
                    self.remove(entry["name"], "data file no commit record references")
        self.snapshots(data.log)
        self.quarantine(data.log)

    def snapshots(self, log: CommitLog[Any]) -> None:
        entries = [e for e in self.files(f"{log.prefix}/{SNAPSHOTS}/data") if self.old(e)]
        if not entries:
            return
        kept: set[str] = set()
        for path in self.store.list(f"{log.prefix}/{SNAPSHOTS}", ".json"):
            if path.rsplit("/", 1)[-1].startswith("snap-"):
                try:
                    snapshot = SnapshotRecord.model_validate_json(self.store.read_bytes(path))
                except (OSError, ValueError):
                    continue
                kept |= {log.snapshot_path(i.path) for i in [snapshot.files, *snapshot.runs, *([snapshot.pending] if snapshot.pending else [])]}
        for entry in entries:
            if entry["name"] not in kept:
                self.remove(entry["name"], "snapshot file no kept snapshot references")

    def quarantine(self, log: CommitLog[Any]) -> None:
        for entry in self.files(f"{log.prefix}/{QUARANTINE}"):
            if self.old(entry):
                self.remove(entry["name"], "quarantined by verify --repair")

    def leases(self, prefix: str) -> set[str]:
        """Shards named by live leases (in flight); expired leases past the grace period are removed."""
        leases = Leases(self.store, prefix)
        live = leases.live()
        live_paths = {lease.path for lease in live}
        for entry in self.files(f"{prefix}/{LEASES}"):
            if entry["name"] not in live_paths and self.old(entry):
                self.remove(entry["name"], "expired lease")
        return {f"shards/{lease.record.shard}.parquet" for lease in live}

    def checkpoints(self, run: TrainedRun) -> None:
        committed = {step_tag(r["step"]) for r in run.checkpoints.records()}
        base = f"{run.prefix}/checkpoints"
        for folder in self.store.list_dirs(base):
            tag = folder.rsplit("/", 1)[-1]
            if tag.startswith("step-") and tag not in committed:
                entries = list(self.files(folder))
                if entries and all(self.old(e) for e in entries):
                    for entry in entries:
                        self.remove(entry["name"], "checkpoint upload that was never committed")
        self.quarantine(run.log)
        self.quarantine(run.checkpoints.log)


def vacuum(store: Store, corpus: str, older_than_s: float = 3600.0, dry_run: bool = False) -> VacuumReport:
    """Remove temporary and unreferenced files of a corpus older than `older_than_s`."""
    store.require_root()
    if not store.exists(store.path(corpus)):
        raise InputError(f"corpus {corpus!r} does not exist in {store.uri(store.root)}")
    run = Vacuum(store, corpus, older_than_s, dry_run)
    run.temporary_files()
    run.data_log(DocumentTable(store, corpus).data)
    for folder in store.list_dirs(store.path(corpus, "embeddings")):
        embeddings = EmbeddingStore(store, corpus, folder.rsplit("/", 1)[-1])
        run.data_log(embeddings.data, run.leases(embeddings.log.prefix))
    for kind in (AdapterStore, CompressorStore):
        for folder in store.list_dirs(store.path(corpus, kind.kind)):
            run.checkpoints(kind(store, corpus, folder.rsplit("/", 1)[-1]))
    return run.report
