"""Ingest: bad items are skipped by name with a reason and never touch the store; re-ingesting
the same folder writes nothing; a corpus name can never leave the store root."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import make_text
from tests.fixtures_compress import commit_records, env_clean, run_cli, snapshot, write_docs  # noqa: F401

pytestmark = pytest.mark.usefixtures("env_clean")


def test_bad_items_are_skipped_by_name_and_the_store_keeps_what_it_had(tmp_path: Path, root: str) -> None:
    rc, _, _, first = run_cli("ingest", str(write_docs(tmp_path / "good", {"a": make_text(1, 40), "b": make_text(2, 40)})), "--corpus", "c", "--root", root)
    assert rc == 0 and first["documents_added"] == 2 and first["skipped"] == []
    before, records_before = snapshot(root), commit_records(root)

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.txt").write_text("  \n\t\n", encoding="utf-8")
    (bad / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    lines = [
        {"id": "no-text", "metadata": {"k": 1}},
        {"id": "../../x", "text": "escape attempt"},
        {"id": "a", "text": "first claim on id a"},
        {"id": "a", "text": "second, different claim on id a"},
    ]
    (bad / "docs.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")

    rc, _, _, result = run_cli("ingest", str(bad), "--corpus", "c", "--root", root)
    assert rc == 0, "bad items are skipped, the run itself succeeds"
    assert (result["documents_added"], result["documents_updated"], result["parts_committed"]) == (0, 0, 0)
    skipped = {s["item"]: s["reason"] for s in result["skipped"]}
    assert len(result["skipped"]) == 5, result["skipped"]

    def reason_for(fragment: str) -> str:
        (match,) = [reason for item, reason in skipped.items() if fragment in item]
        return match

    assert "empty" in reason_for("empty.txt")
    assert "UTF-8" in reason_for("latin1.txt")
    assert "'text'" in reason_for("docs.jsonl:1")
    assert "'../../x'" in reason_for("docs.jsonl:2") and "not allowed" in reason_for("docs.jsonl:2")
    assert "different texts" in skipped["a"] and "docs.jsonl:3" in skipped["a"] and "docs.jsonl:4" in skipped["a"]

    assert snapshot(root) == before and commit_records(root) == records_before
    assert not list(tmp_path.rglob("x")) and not (Path(root).parent / "x").exists()


def test_ingest_same_folder_twice_writes_nothing(tmp_path: Path, root: str) -> None:
    source = write_docs(tmp_path / "src", {f"d{i}": make_text(i, 30 + i) for i in range(4)})
    (source / "sub").mkdir()
    (source / "sub" / "nested.md").write_text("# Nested\n\n" + make_text(9, 20), encoding="utf-8")
    rc, _, _, first = run_cli("ingest", str(source), "--corpus", "c", "--root", root)
    assert rc == 0 and first["documents_added"] == 5 and first["parts_committed"] == 1
    before = snapshot(root)

    rc, _, _, second = run_cli("ingest", str(source), "--corpus", "c", "--root", root)
    assert rc == 0
    assert (second["documents_added"], second["documents_updated"], second["documents_unchanged"], second["parts_committed"]) == (0, 0, 5, 0)
    assert snapshot(root) == before

    (part,) = Path(root).rglob("documents/part-*.parquet")
    table = pq.read_table(part)
    assert sorted(table["doc_id"].to_pylist()) == ["d0", "d1", "d2", "d3", "sub/nested"]
    assert set(table.column_names) >= {"doc_id", "text", "sha256", "source", "metadata"}


def test_jsonl_and_parquet_sources(tmp_path: Path, root: str) -> None:
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text(
        json.dumps({"id": "j1", "text": make_text(1, 10), "metadata": {"lang": "en"}}) + "\n\n"
        + json.dumps({"doc_id": "j2", "text": make_text(4, 10)}) + "\n"  # the QA files' and Parquet's name for it
        + json.dumps({"text": make_text(5, 10), "question": "what?"}) + "\n",  # e.g. a needle-in-a-haystack generator's lines
        encoding="utf-8",
    )
    parquet = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"id": ["p1", "p2"], "text": [make_text(2, 10), make_text(3, 10)]}), parquet)
    for source, n, skipped in ((jsonl, 2, [{"item": f"{jsonl}:4", "reason": "line has no 'id' (or 'doc_id') field"}]), (parquet, 2, [])):
        rc, _, err, result = run_cli("ingest", str(source), "--corpus", "c", "--root", root)
        assert rc == 0, err
        assert result["documents_added"] == n and result["skipped"] == skipped
    parts = [pq.read_table(p) for p in Path(root).rglob("documents/part-*.parquet")]
    assert sorted(i for t in parts for i in t["doc_id"].to_pylist()) == ["j1", "j2", "p1", "p2"]
    j1 = next(t for t in parts if "j1" in t["doc_id"].to_pylist()).to_pylist()[0]
    assert json.loads(j1["metadata"]) == {"lang": "en"}


@pytest.mark.parametrize("command", ["ingest", "compress", "export"])
@pytest.mark.parametrize("corpus", ["../x", "..", "a/../../x", "/abs"])
def test_corpus_name_cannot_escape_the_root(tmp_path: Path, root: str, tiny_model: Path, command: str, corpus: str) -> None:
    source = write_docs(tmp_path / "src", {"a": make_text(1, 20)})
    args = {
        "ingest": ["ingest", str(source)],
        "compress": ["compress", "--model", str(tiny_model)],
        "export": ["export", "--out", str(tmp_path / "out.parquet")],
    }[command]
    before = snapshot(tmp_path)
    rc, stdout, err, _ = run_cli(*args, "--corpus", corpus, "--root", root)
    assert rc == 2
    assert "corpus" in err and "not allowed" in err and repr(corpus) in err
    assert stdout == ""
    assert snapshot(tmp_path) == before and not (tmp_path / "x").exists()
