"""The corruption matrix: shards, document parts, adapters and commit records, each flipped,
truncated, deleted, swapped for another valid file, or their records made unreadable, foreign or
pointing outside the root. In every case, through the `lloco` commands users run:
- no wrong number is ever returned: export gives a subset of the uncorrupted rows, exactly; ask
  refuses what it cannot trust;
- the problem is reported by name (export's problems, ask's error, `lloco verify` with exit 1);
- the next compress, ingest, finetune or `verify --repair` restores an export identical to the
  uncorrupted one (and an adapter identical to the uncorrupted one), after which verify is clean.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import make_text
from tests.finetune_helpers import QA_LINES
from tests.fixtures_compress import env_clean, run_cli, write_docs  # noqa: F401

pytestmark = pytest.mark.usefixtures("env_clean")
DOCS = {f"d{i}": make_text(100 + i, 40 + 15 * i) for i in range(6)}


@dataclass
class Golden:
    work: Path
    root: Path
    model: str
    source: Path
    qa: Path
    encoder: Path
    reference: pa.Table
    adapter_sha: str

    def shard_of(self, doc_id: str) -> Path:
        return next(p for p in sorted(self.encoder.glob("shards/*.parquet")) if doc_id in pq.read_table(p, columns=["doc_id"])["doc_id"].to_pylist())

    def part_of(self, doc_id: str) -> Path:
        return next(p for p in sorted((self.root / "c" / "documents").glob("part-*.parquet")) if doc_id in pq.read_table(p, columns=["doc_id"])["doc_id"].to_pylist())


def lloco(*argv: str, root: Path) -> tuple[int, str, dict[str, Any] | None]:
    """Run a command in this process; (exit status, stderr, the JSON summary even on exit 1)."""
    rc, stdout, err, _ = run_cli(*argv, "--corpus", "c", "--root", str(root))
    lines = stdout.strip().splitlines()
    return rc, err, json.loads(lines[-1]) if lines and lines[-1].startswith("{") else None


def commands(golden: Golden, root: Path) -> dict[str, tuple[str, ...]]:
    return {
        "ingest": ("ingest", str(golden.source)),
        "compress": ("compress", "--model", golden.model, "--device", "cpu", "--shard-size", "2"),
        "finetune": ("finetune", "--qa", str(golden.qa), "--model", golden.model, "--device", "cpu", "--max-steps", "1", "--output-key", "ad"),
        "repair": ("verify", "--repair"),
    }


@pytest.fixture(scope="module")
def golden(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Golden:
    work = tmp_path_factory.mktemp("golden")
    root = work / "root"
    source = write_docs(work / "src", DOCS)
    first = write_docs(work / "src-first", {d: DOCS[d] for d in ("d0", "d1", "d2", "d3")})
    qa = work / "qa.jsonl"
    qa.write_text("".join(json.dumps({**line, "doc_id": f"d{i % 6}"}) + "\n" for i, line in enumerate(QA_LINES)))
    g = Golden(work, root, str(tiny_model), source, qa, root, pa.table({}), "")
    cmd = commands(g, root)
    for argv in (("ingest", str(first)), cmd["ingest"], cmd["compress"], cmd["finetune"]):  # two document parts, three shards
        rc, err, _ = lloco(*argv, root=root)
        assert rc == 0, err
    rc, err, _ = lloco("finetune", "--qa", str(qa), "--model", g.model, "--device", "cpu", "--max-steps", "1", "--output-key", "other", "--seed", "7", root=root)
    assert rc == 0, err
    (g.encoder,) = (root / "c" / "embeddings").iterdir()
    rc, err, _ = lloco("export", "--out", str(work / "reference.parquet"), root=root)
    assert rc == 0, err
    g.reference = pq.read_table(work / "reference.parquet")
    g.adapter_sha = hashlib.sha256((root / "c" / "adapters" / "ad" / "adapter_model.safetensors").read_bytes()).hexdigest()
    assert lloco("verify", root=root)[0] == 0
    return g


# faults: each changes a copy of the golden store and returns the file that must be named ---------------
def flip(path: Path) -> Path:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(b ^ 0x5A for b in data[middle : middle + 64])
    path.write_bytes(bytes(data))
    return path


def truncate(path: Path) -> Path:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    return path


def delete(path: Path) -> Path:
    path.unlink()
    return path


def swap(path: Path, other: Path) -> Path:
    path.write_bytes(other.read_bytes())
    return path


def record_of(data_file: Path) -> Path:
    return data_file.parent.parent / "_commits" / f"{data_file.stem}.json" if data_file.parent.name == "shards" else data_file.parent / "_commits" / f"{data_file.stem}.json"


def outside(g: Golden, root: Path) -> Path:
    """Records naming files outside the root; the files exist there and hold plausible rows."""
    evil = root.parent / "evil.parquet"
    shutil.copy(in_root(g, root, g.shard_of("d0")), evil)
    table = pq.read_table(evil)
    nines = pa.array([[9.0] * table.schema.field("summary").type.list_size] * table.num_rows, table.schema.field("summary").type)
    pq.write_table(table.set_column(6, "summary", nines), evil)
    commits = root / "c" / "embeddings" / g.encoder.name / "_commits"
    template = json.loads(min(commits.glob("*.json")).read_text())
    (commits / "evil.json").write_text(json.dumps({**template, "name": "evil", "shard": "../../../../evil.parquet"}))
    docs_record = json.loads(min((root / "c" / "documents" / "_commits").glob("*.json")).read_text())
    (root / "c" / "documents" / "_commits" / "evil-part.json").write_text(json.dumps({**docs_record, "name": "evil-part", "part": "../../evil.parquet", "documents": {"zz": "0" * 64}}))
    return commits / "evil.json"


def in_root(g: Golden, root: Path, path: Path) -> Path:
    return root / path.relative_to(g.root)


@dataclass
class Case:
    name: str
    fault: Callable[[Golden, Path], Path]
    restore: tuple[str, ...]
    ask_fails: bool = False  # ask with the damaged file must refuse, naming it


def _shard(g: Golden, root: Path, doc: str = "d2") -> Path:
    return in_root(g, root, g.shard_of(doc))


def _part(g: Golden, root: Path, doc: str = "d4") -> Path:
    return in_root(g, root, g.part_of(doc))


def _adapter(root: Path, key: str = "ad") -> Path:
    return root / "c" / "adapters" / key / "adapter_model.safetensors"


CASES = [
    Case("shard flipped", lambda g, r: flip(_shard(g, r)), ("repair", "compress"), ask_fails=True),
    Case("shard truncated", lambda g, r: truncate(_shard(g, r)), ("compress",), ask_fails=True),
    Case("shard deleted", lambda g, r: delete(_shard(g, r)), ("compress",)),
    Case("shard swapped for a valid one", lambda g, r: swap(_shard(g, r), _shard(g, r, "d4")), ("repair", "compress")),
    Case("part flipped", lambda g, r: flip(_part(g, r)), ("repair", "ingest")),
    Case("part truncated", lambda g, r: truncate(_part(g, r)), ("ingest",)),
    Case("part deleted", lambda g, r: delete(_part(g, r)), ("ingest",)),
    Case("part swapped for a valid one", lambda g, r: swap(_part(g, r, "d0"), _part(g, r, "d4")), ("ingest",)),
    Case("adapter flipped", lambda g, r: flip(_adapter(r)), ("repair", "finetune"), ask_fails=True),
    Case("adapter truncated", lambda g, r: truncate(_adapter(r)), ("finetune",), ask_fails=True),
    Case("adapter deleted", lambda g, r: delete(_adapter(r)), ("finetune",), ask_fails=True),
    Case("adapter swapped for a valid one", lambda g, r: swap(_adapter(r), _adapter(r, "other")), ("repair", "finetune"), ask_fails=True),
    Case("shard record truncated", lambda g, r: _cut_record(record_of(_shard(g, r))), ("compress",)),
    Case("shard record of the wrong type", lambda g, r: _edit(record_of(_shard(g, r)), lambda x: {**x, "documents": list(x["documents"])}), ("repair",)),
    Case("document record emptied", lambda g, r: _write(record_of(_part(g, r)), b"{}"), ("ingest",)),
    Case("record claiming foreign documents", lambda g, r: _edit(record_of(_shard(g, r, "d0")), lambda x: {**x, "documents": {**x["documents"], "d2": _sha("d2")}}), ("compress",)),
    Case("records pointing outside the root", lambda g, r: outside(g, r), ("compress", "repair")),
]


def _sha(doc: str) -> str:
    return hashlib.sha256(DOCS[doc].encode()).hexdigest()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _cut_record(path: Path) -> Path:
    return _write(path, path.read_bytes()[:40])


def _edit(path: Path, change: Callable[[dict[str, Any]], dict[str, Any]]) -> Path:
    return _write(path, json.dumps(change(json.loads(path.read_text()))).encode())


def rows(table: pa.Table) -> list[dict[str, Any]]:
    return table.to_pylist()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_corruption_is_named_never_returned_and_restored(golden: Golden, tmp_path: Path, case: Case) -> None:
    root = tmp_path / "root"
    shutil.copytree(golden.root, root)
    bad = case.fault(golden, root)
    named = {str(bad)}

    # no wrong number: whatever export still gives is exactly the uncorrupted rows
    rc, err, result = lloco("export", "--out", str(tmp_path / "damaged.parquet"), root=root)
    assert rc == 0, err
    got = rows(pq.read_table(tmp_path / "damaged.parquet"))
    reference = rows(golden.reference)
    assert all(row in reference for row in got)
    if len(got) < len(reference):
        assert {p["path"] for p in result["problems"]} & named, f"rows left out without naming {bad}: {result['problems']}"
    if case.ask_fails:
        doc = "d2" if "shard" in case.name else "d0"
        rc, err, _ = lloco("ask", "Who?", "--doc", doc, "--adapter-key", "ad", "--device", "cpu", "--max-new-tokens", "2", root=root)
        assert rc == 2 and str(bad) in err, err

    # named by verify, exit 1; the next writer (or repair) restores exactly
    rc, err, report = lloco("verify", root=root)
    assert rc == 1 and report is not None, err
    assert named & {f["path"] for f in report["files"] if f["status"] == "problem"}, report
    cmd = commands(golden, root)
    for step in case.restore:
        rc, err, result = lloco(*cmd[step], root=root)
        assert rc == 0, f"{step}: {err} {result}"
    rc, err, result = lloco("export", "--out", str(tmp_path / "restored.parquet"), root=root)
    assert rc == 0 and result["problems"] == [], (err, result)
    assert pq.read_table(tmp_path / "restored.parquet").equals(golden.reference)
    assert hashlib.sha256(_adapter(root).read_bytes()).hexdigest() == golden.adapter_sha
    rc, err, report = lloco("verify", root=root)
    assert rc == 0, [f for f in report["files"] if f["status"] != "ok"]


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_read_only_commands_create_nothing(golden: Golden, tmp_path: Path) -> None:
    typo = tmp_path / "no" / "such" / "root"
    for argv in (("export", "--out", str(tmp_path / "x.parquet")), ("verify",), ("vacuum",), ("ask", "Who?", "--device", "cpu")):
        rc, err, _ = lloco(*argv, root=typo)
        assert rc == 2 and str(typo) in err and "Traceback" not in err, err
    assert not (tmp_path / "no").exists() and not (tmp_path / "x.parquet").exists()

    root = tmp_path / "root"
    shutil.copytree(golden.root, root)
    before = tree(root)
    for argv in (("export", "--out", str(tmp_path / "all.parquet")), ("verify",), ("ask", "Who?", "--doc", "d1", "--device", "cpu", "--max-new-tokens", "2")):
        assert lloco(*argv, root=root)[0] == 0
    assert tree(root) == before


def test_vacuum_removes_leftovers_never_committed_or_in_flight_files(golden: Golden, tmp_path: Path) -> None:
    import os
    import time

    root = tmp_path / "root"
    shutil.copytree(golden.root, root)
    encoder = root / "c" / "embeddings" / golden.encoder.name
    hour_ago = time.time() - 7200
    old = {
        "tmp": encoder / "shards" / ".tmp-0123-shard-x.parquet",
        "orphan": encoder / "shards" / "shard-00000000000000000000.parquet",
        "part orphan": root / "c" / "documents" / "part-00000000000000000000.parquet",
        "quarantined": encoder / "_quarantine" / "1-shards--shard-bad.parquet",
        "in flight": encoder / "shards" / "shard-11111111111111111111.parquet",
    }
    young = encoder / "shards" / "shard-22222222222222222222.parquet"
    for path in [*old.values(), young]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"leftover")
    for path in old.values():
        os.utime(path, (hour_ago, hour_ago))
    lease = encoder / "_leases" / "other-shard-11111111111111111111.json"
    lease.parent.mkdir(exist_ok=True)
    lease.write_text(json.dumps({"owner": "other", "shard": "shard-11111111111111111111", "documents": {}, "created_ns": 0, "expires_ns": time.time_ns() + 10**11}))
    committed = sorted(p for p in tree(golden.root) if not p.startswith("c/adapters/other"))

    rc, err, report = lloco("vacuum", "--older-than", "1h", root=root)
    assert rc == 0, err
    removed = {r["path"] for r in report["removed"]}
    assert removed == {str(old[k]) for k in ("tmp", "orphan", "part orphan", "quarantined")}
    assert young.exists() and old["in flight"].exists() and lease.exists()
    assert all((root / p).exists() for p in committed)
    rc, _, _result = lloco("export", "--out", str(tmp_path / "after.parquet"), root=root)
    assert rc == 0 and pq.read_table(tmp_path / "after.parquet").equals(golden.reference)
    assert lloco("verify", root=root)[0] == 0
