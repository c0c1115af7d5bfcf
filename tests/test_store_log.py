"""Commit logs at scale without a model: snapshots give the same state as the records they fold,
a compaction killed at any write leaves the older state in force, a writer racing a compaction
never loses its record, and compress planning reads what is new, not what is committed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pytest

from lloco_core.store import datalog
from lloco_core.store.backlog import backlog, compact_embeddings
from lloco_core.store.documents import DocumentTable
from lloco_core.store.embeddings import EmbeddingStore, shard_name, shard_schema
from lloco_core.store.sources import SourceDocument
from lloco_core.store.storage import Store

KEY = "enc-test"


def doc(doc_id: str, version: int = 0) -> SourceDocument:
    return SourceDocument(doc_id, f"text of {doc_id} version {version}", "test")


def ingest_docs(store: Store, docs: list[SourceDocument], added: int | None = None) -> None:
    DocumentTable(store, "c").append(docs, len(docs) if added is None else added)


def commit_shard(store: Store, docs: list[SourceDocument]) -> str:
    """A real shard (one 2-number summary per document) written and committed as compress does."""
    pairs = {d.doc_id: d.sha256 for d in docs}
    name = shard_name(KEY, pairs)
    rows = sorted(docs, key=lambda d: d.doc_id)
    table = pa.table(
        {
            "doc_id": [d.doc_id for d in rows],
            "doc_sha256": [d.sha256 for d in rows],
            "segment_index": pa.array([0] * len(rows), pa.int32()),
            "token_start": pa.array([0] * len(rows), pa.int32()),
            "token_end": pa.array([1] * len(rows), pa.int32()),
            "text": [d.text for d in rows],
            "summary": pa.FixedSizeListArray.from_arrays(pa.array([float(i) for i in range(2 * len(rows))], pa.float32()), 2),
        },
        schema=shard_schema(1, 2, "float32", KEY, 32),
    )
    EmbeddingStore(store, "c", KEY).write_shard(name, table, pairs, {})
    return name


def state_of(store: Store) -> tuple[dict, dict]:
    """What readers see: current documents and the embedding index."""
    current = DocumentTable(store, "c").current()
    index = EmbeddingStore(store, "c", KEY).current_index(current)
    return {d: (r.sha256, r.part) for d, r in current.items()}, index


def plan(store: Store, full: bool = False) -> tuple[list[tuple[str, str]], int, str, int]:
    found = backlog(EmbeddingStore(store, "c", KEY), DocumentTable(store, "c"), full=full)
    return [(r.doc_id, r.sha256) for r in found.todo], found.documents, found.path, found.reads


def build(store: Store, n_docs: int, shard_size: int, updates: int = 0) -> list[SourceDocument]:
    """n_docs documents in parts of 50, `updates` of them changed later; all but the last shard compressed."""
    docs = [doc(f"d{i:05d}") for i in range(n_docs)]
    for start in range(0, n_docs, 50):
        ingest_docs(store, docs[start : start + 50])
    changed = [doc(d.doc_id, 1) for d in docs[:updates]]
    if changed:
        ingest_docs(store, changed, added=0)
    current = changed + docs[updates:]
    for start in range(0, len(current) - shard_size, shard_size):
        commit_shard(store, current[start : start + shard_size])
    return current


def compact(store: Store) -> None:
    DocumentTable(store, "c").data.compact()
    compact_embeddings(EmbeddingStore(store, "c", KEY), DocumentTable(store, "c"))


def test_snapshots_fold_exactly_what_the_records_say(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "root"))
    current = build(store, 300, 20, updates=30)
    before, before_plan = state_of(store), plan(store)
    assert before_plan[2] == "full" and before_plan[1] == 300 and len(before_plan[0]) == 20
    compact(store)
    assert state_of(store) == before
    fast = plan(store)
    assert fast[2] == "fast" and fast[:2] == before_plan[:2]

    # more happens after the snapshot: new and changed documents, some compressed; then a tombstone
    ingest_docs(store, [doc("n1"), doc("n2"), doc("d00040", 2)], added=2)
    commit_shard(store, [doc("n1")])
    full, fast = plan(store, full=True), plan(store)
    assert fast[2] == "fast" and fast[:2] == full[:2]
    assert sorted(d for d, _ in fast[0]) == sorted({d.doc_id for d in current[-20:]} | {"n2", "d00040"})
    compact(store)
    assert plan(store)[:2] == full[:2] and state_of(store) == state_of(store)
    second = state_of(store)
    shard = sorted((tmp_path / "root").rglob("shards/*.parquet"))[3]
    EmbeddingStore(store, "c", KEY).data.drop({f"shards/{shard.name}": "test"})
    after = plan(store)
    assert after[2] == "full" and len(after[0]) == len(full[0]) + 20  # the dropped shard's documents are back in the backlog
    assert state_of(store)[0] == second[0] and len(state_of(store)[1]) == len(second[1]) - 20


def test_a_compaction_killed_at_any_write_leaves_the_older_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(str(tmp_path / "root"))
    build(store, 120, 10)
    compact(store)
    ingest_docs(store, [doc("x1"), doc("x2")])
    commit_shard(store, [doc("x1")])
    want, want_plan = state_of(store), plan(store, full=True)[:2]

    real_write = Store.write_bytes
    for kill_at in range(12):  # every prefix of a compaction's writes: marker, runs, files, pending, snapshot record
        writes = []

        def dying_write(self: Store, path: str, data: bytes, kill_at: int = kill_at, writes: list = writes) -> None:
            if len(writes) == kill_at:
                raise KeyboardInterrupt("killed")
            writes.append(path)
            real_write(self, path, data)

        monkeypatch.setattr(Store, "write_bytes", dying_write)
        try:
            compact_embeddings(EmbeddingStore(store, "c", KEY), DocumentTable(store, "c"))
            finished = True
        except KeyboardInterrupt:
            finished = False
        monkeypatch.setattr(Store, "write_bytes", real_write)
        assert state_of(store) == want, f"killed after {kill_at} writes"
        assert plan(store)[:2] == want_plan
        if finished:
            assert writes[-1].endswith(".json") and "/snap-" in writes[-1]
            break
    else:
        pytest.fail("a compaction takes more writes than tried")


def test_a_writer_racing_a_compaction_keeps_its_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The compaction seals the generation between the writer's record write and its re-check."""
    store = Store(str(tmp_path / "root"))
    build(store, 40, 10)
    log = EmbeddingStore(store, "c", KEY).log
    real_open = log.open_generation
    calls = []

    def open_generation_with_compaction_in_between() -> int:
        calls.append(1)
        if len(calls) == 2:  # the re-check after the record landed: a compaction ran just before it
            compact(store)
        return real_open()

    monkeypatch.setattr(type(log), "open_generation", lambda self: open_generation_with_compaction_in_between())
    name = commit_shard(store, [doc("d00035")])
    monkeypatch.undo()
    records = sorted((tmp_path / "root").rglob(f"_commits/**/{name}.json"))
    assert len(records) == 2, "written again into the generation the compaction opened"
    assert EmbeddingStore(store, "c", KEY).current_index(DocumentTable(store, "c").current())["d00035"][1] == f"shards/{name}.parquet"


@pytest.mark.parametrize("committed", [200, 2000])
def test_planning_reads_what_is_new_not_what_is_committed(tmp_path: Path, committed: int) -> None:
    store = Store(str(tmp_path / "root"))
    build(store, committed, 50)
    commit_shard(store, [doc(f"d{i:05d}") for i in range(committed - 50, committed)])
    compact(store)
    ingest_docs(store, [doc(f"new{i}") for i in range(7)])
    todo, documents, path, reads = plan(store)
    assert (path, documents, len(todo)) == ("fast", committed + 7, 7)
    assert reads == 4, "snapshot record, files table, pending list, one new document record"
    assert plan(store, full=True)[:2] == (todo, documents)


def test_unreadable_or_unsafe_records_are_skipped_by_name(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "root"))
    build(store, 30, 10)
    want = state_of(store)
    commits = tmp_path / "root" / "c" / "embeddings" / KEY / "_commits"
    good = json.loads(min(commits.glob("*.json")).read_text())
    bad = {
        "truncated.json": b'{"name": "truncated", "committed_ns": 1, "sha',
        "empty.json": b"{}",
        "wrong-type.json": json.dumps({**good, "name": "wrong-type", "documents": ["d00001"]}).encode(),
        "outside.json": json.dumps({**good, "name": "outside", "shard": "../../../../evil.parquet"}).encode(),
    }
    foreign = {**good["documents"], "d00025": hashlib.sha256(b"text of d00025 version 0").hexdigest()}
    forged = shard_name(KEY, foreign)
    bad[f"{forged}.json"] = json.dumps({**good, "name": forged, "shard": good["shard"], "documents": foreign}).encode()
    for name, data in bad.items():
        (commits / name).write_bytes(data)
    embeddings = EmbeddingStore(store, "c", KEY)
    embeddings.state()
    assert sorted(Path(p.path).name for p in embeddings.problems) == sorted(bad)
    assert state_of(store) == want
    assert plan(store)[:2] == plan(store, full=True)[:2]
    assert datalog.COMPACT_RECORDS > 6  # the bad records alone do not trigger a compaction here
