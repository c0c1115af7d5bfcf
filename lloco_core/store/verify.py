"""`lloco verify`: check every committed byte of a corpus, and with `repair` make it consistent again.

Checked: every commit record (readable, valid, confined names, named by what it lists), every
committed document part and embedding shard (size and sha256 against the record, readable
Parquet, and holding exactly the document versions its record lists, each text matching its
sha256), the snapshots in force (their files against their checksums), every finished adapter and
trained compressor, and every committed training checkpoint (each file against its checksum). Each
file gets one line in the report; files committed before checksums existed are checked by content only.

Repair never writes data it cannot prove; it makes the store say only what is true, so the next
writer restores the rest:
- an invalid record or snapshot record is moved to `<log>/_quarantine/` (readers already skip it);
  a shard whose record was invalid but whose file holds exactly what its name says is committed
  again (recovered without recomputing); document parts are not, since a re-commit would make an
  old version the latest: the next ingest writes their documents again;
- a bad part or shard gets a tombstone record and is moved to quarantine, so the next compress
  (shards) or ingest (parts) writes its documents again;
- a bad adapter or compressor has its commit record quarantined (it is no longer finished: the
  next finetune or train-compressor trains it again); a bad checkpoint likewise (training resumes from an older one or starts over).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from lloco_core.store.commitlog import SNAPSHOTS, CommitLog
from lloco_core.store.datalog import DataLog, LogState
from lloco_core.store.documents import DocumentTable
from lloco_core.store.embeddings import EmbeddingStore, list_encoders, shard_name
from lloco_core.store.records import FileSum, Problem, SnapshotRecord
from lloco_core.store.storage import Store
from lloco_core.training.checkpoints import AdapterStore, CompressorStore, TrainedRun


@dataclass
class FileCheck:
    path: str
    kind: str  # record, part, shard, snapshot, adapter, compressor, checkpoint
    problem: str | None = None
    repair: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {"path": self.path, "kind": self.kind, "status": "ok" if self.problem is None else "problem"}
        if self.problem is not None:
            out["problem"] = self.problem
        if self.repair is not None:
            out["repair"] = self.repair
        return out


@dataclass
class VerifyReport:
    corpus: str
    store: str
    repair: bool
    files: list[FileCheck] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def problems(self) -> list[FileCheck]:
        return [f for f in self.files if f.problem is not None]

    def as_dict(self) -> dict[str, Any]:
        problems = self.problems
        unrepaired = [f for f in problems if f.repair is None]
        return {
            "corpus": self.corpus,
            "store": self.store,
            "checked": len(self.files),
            "problems": len(problems),
            "repaired": len(problems) - len(unrepaired),
            "files": [f.as_dict() for f in self.files],
            "seconds": round(self.seconds, 3),
            # 0: clean (or every problem repaired); 1: problems remain
            "exit_status": 1 if (unrepaired if self.repair else problems) else 0,
        }


class Verifier:
    def __init__(self, store: Store, corpus: str, repair: bool, on_file: Callable[[FileCheck], None] | None = None) -> None:
        self.store = store
        self.corpus = corpus
        self.repair = repair
        self.on_file = on_file
        self.report = VerifyReport(corpus, store.uri(store.path(corpus)), repair)

    def add(self, check: FileCheck) -> FileCheck:
        self.report.files.append(check)
        if self.on_file is not None:
            self.on_file(check)
        return check

    # records and snapshots -----------------------------------------------------------------------
    def records(self, log: CommitLog[Any], problems: list[Problem], recover: Callable[[str], str | None] | None = None) -> None:
        """Report every record problem; with repair, quarantine the record (and maybe recover its file)."""
        for problem in problems:
            check = self.add(FileCheck(self.store.uri(problem.path), "snapshot" if f"/{SNAPSHOTS}/" in problem.path else "record", problem.what))
            if self.repair and self.store.exists(problem.path):
                moved = log.quarantine(problem.path)
                recovered = recover(problem.path) if recover else None
                check.repair = f"moved to {self.store.uri(moved)}" + (f"; {recovered}" if recovered else "")

    def snapshot_files(self, data: DataLog[Any], snapshot: SnapshotRecord | None) -> None:
        if snapshot is None:
            return
        for item in [snapshot.files, *snapshot.runs, *([snapshot.pending] if snapshot.pending else [])]:
            path = data.log.snapshot_path(item.path)
            problem = _check_file(self.store, path, FileSum(size=item.size, sha256=item.sha256))
            check = self.add(FileCheck(self.store.uri(path), "snapshot", problem))
            if problem and self.repair:
                record = data.log.snapshot_path(f"snap-{snapshot.generation:06d}.json")
                if self.store.exists(record):
                    check.repair = f"snapshot record moved to {self.store.uri(data.log.quarantine(record))}"
                else:
                    check.repair = "snapshot record already moved"

    # data files ----------------------------------------------------------------------------------
    def data_files(self, data: DataLog[Any], state: LogState[Any], kind: str, content: Callable[[pa.Table, set[tuple[str, str]]], str | None]) -> None:
        """Check every live committed file of a data log: bytes against the checksum, then content."""
        wanted: dict[str, set[tuple[str, str]]] = {}
        for doc_id, sha, file, ns in state.entries or []:
            if state.usable(file, ns) or file in state.bad:
                wanted.setdefault(file, set()).add((doc_id, sha))
        bad: dict[str, str] = {}
        for file, info in sorted(state.files.items()):
            if not info.live:
                continue
            path = data.log.data_path(file)
            expected = wanted.get(file, set())
            problem = state.bad.get(file) or _check_file(self.store, path, info.sum(), lambda table, expected=expected: content(table, expected))
            check = self.add(FileCheck(self.store.uri(path), kind, problem))
            if problem is not None:
                bad[file] = problem
                if self.repair:
                    check.repair = "tombstone committed" + (f"; moved to {self.store.uri(data.log.quarantine(path))}" if self.store.exists(path) else "")
        if self.repair and bad:
            data.drop(bad, "repair")

    # the corpus -------------------------------------------------------------------------------
    def documents(self) -> None:
        table = DocumentTable(self.store, self.corpus)
        state = table.data.state(entries=True)
        self.records(table.log, state.problems)
        self.snapshot_files(table.data, state.view.snapshot)
        self.data_files(table.data, state, "part", _part_content)

    def embeddings(self, key: str) -> None:
        embeddings = EmbeddingStore(self.store, self.corpus, key)
        state = embeddings.data.state(entries=True)
        self.records(embeddings.log, state.problems, lambda path: self._recover_shard(embeddings, path))
        self.snapshot_files(embeddings.data, state.view.snapshot)
        self.data_files(embeddings.data, state, "shard", _shard_content)

    def _recover_shard(self, embeddings: EmbeddingStore, record_path: str) -> str | None:
        """Commit again a shard whose record was bad, when its file holds exactly what its name says."""
        name = record_path.rsplit("/", 1)[-1].removesuffix(".json")
        shard = f"shards/{name}.parquet"
        try:
            data = self.store.read_bytes(embeddings.log.data_path(shard))
            table = pq.read_table(pa.BufferReader(data), columns=["doc_id", "doc_sha256"])
            if table.num_rows == 0:
                return None
        except (OSError, ValueError, pa.ArrowException):
            return None
        documents = dict(zip(table["doc_id"].to_pylist(), table["doc_sha256"].to_pylist()))
        if shard_name(embeddings.encoder_key, documents) != name or embeddings.log.is_committed(name):
            return None
        embeddings.log.commit(name, {"shard": shard, "documents": documents, "segments": table.num_rows, "files": {shard: FileSum.of(data)}})
        return f"{shard} recovered: committed again from its file"

    def trained_runs(self, kind: type[TrainedRun], label: str) -> None:
        """Finished adapters or compressors (their committed files) and their training checkpoints."""
        for folder in self.store.list_dirs(self.store.path(self.corpus, kind.kind)):
            run = kind(self.store, self.corpus, folder.rsplit("/", 1)[-1])
            view = run.log.view()
            self.records(run.log, view.problems)
            record = next((r for r in view.records if r.name == run.finished_name), None)
            if record is not None:
                self._files(run.log, run.prefix, record.sums(), label, view.paths[record.name])
            log = run.checkpoints.log
            checkpoints = log.view()
            self.records(log, checkpoints.problems)
            for checkpoint in checkpoints.records:
                sums: dict[str, FileSum | None] = {name: checkpoint.sums.get(name) for name in checkpoint.files}
                self._files(log, run.checkpoints.folder(checkpoint.step), sums, "checkpoint", checkpoints.paths[checkpoint.name])

    def _files(self, log: CommitLog[Any], folder: str, sums: dict[str, FileSum | None], kind: str, record_path: str) -> None:
        """Check the files a record names (against their checksums where it has them)."""
        problems = []
        for name, expected in sorted(sums.items()):
            path = f"{folder}/{name}"
            problem = _check_file(self.store, path, expected)
            self.add(FileCheck(self.store.uri(path), kind, problem))
            if problem:
                problems.append(self.report.files[-1])
        if problems and self.repair:
            moved = self.store.uri(log.quarantine(record_path))
            for check in problems:
                check.repair = f"its commit record moved to {moved}: no longer committed"


def _check_file(store: Store, path: str, expected: FileSum | None, content: Callable[[pa.Table], str | None] | None = None) -> str | None:
    """What is wrong with a committed file: missing, size or sha256 against its record, or its content."""
    try:
        data = store.read_bytes(path)
    except FileNotFoundError:
        return "committed file is missing"
    except OSError as err:
        return f"committed file cannot be read ({type(err).__name__}: {err})"
    if expected is not None and len(data) != expected.size:
        return f"{len(data)} bytes, its commit record says {expected.size} (truncated or replaced)"
    if expected is not None and hashlib.sha256(data).hexdigest() != expected.sha256:
        return "bytes do not match the sha256 in its commit record"
    if content is None:
        return None
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (OSError, ValueError, pa.ArrowException) as err:
        return f"not readable Parquet ({type(err).__name__}: {err})"
    return content(table)


def _part_content(table: pa.Table, wanted: set[tuple[str, str]]) -> str | None:
    rows = list(zip(table["doc_id"].to_pylist(), table["sha256"].to_pylist(), table["text"].to_pylist()))
    if any(hashlib.sha256(text.encode("utf-8")).hexdigest() != sha for _, sha, text in rows):
        return "a text does not match its sha256"
    held = {(doc_id, sha) for doc_id, sha, _ in rows}
    return None if wanted <= held else f"lacks {len(wanted - held)} document(s) its commit record lists"


def _shard_content(table: pa.Table, wanted: set[tuple[str, str]]) -> str | None:
    held = set(zip(table["doc_id"].to_pylist(), table["doc_sha256"].to_pylist()))
    return None if wanted <= held else f"lacks {len(wanted - held)} document(s) its commit record lists"


def verify(store: Store, corpus: str, repair: bool = False, on_file: Callable[[FileCheck], None] | None = None) -> VerifyReport:
    """Check the whole corpus; with `repair`, quarantine and tombstone what is bad (see the module docstring)."""
    store.require_root()
    started = time.perf_counter()
    verifier = Verifier(store, corpus, repair, on_file)
    verifier.documents()
    for key in list_encoders(store, corpus):
        verifier.embeddings(key)
    verifier.trained_runs(AdapterStore, "adapter")
    verifier.trained_runs(CompressorStore, "compressor")
    verifier.report.seconds = time.perf_counter() - started
    return verifier.report


__all__ = ["FileCheck", "VerifyReport", "verify"]
