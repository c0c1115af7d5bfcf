"""Incremental compression through the `lloco` CLI: only new and changed documents are encoded,
readers see the new version of a changed document, and a run that cannot proceed changes nothing."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from lloco_core.store.embeddings import EmbeddingStore
from lloco_core.store.storage import Store
from tests.conftest import make_text
from tests.fixtures_compress import (  # noqa: F401
    chunk,
    commit_records,
    compressor,
    env_clean,
    plain_summaries,
    run_cli,
    snapshot,
    token_ids,
    write_docs,
)

pytestmark = pytest.mark.usefixtures("env_clean")
SUMMARY_KEYS = {"documents_compressed", "documents_skipped", "segments_written", "shards_committed", "encoder_key", "store"}


def compress_cli(root: str, model: Path | str, *extra: str) -> tuple[int, str, dict | None]:
    rc, _, err, result = run_cli("compress", "--corpus", "c", "--root", root, "--model", str(model), "--device", "cpu", *extra)
    return rc, err, result


def export_cli(root: str, out: Path) -> pq.ParquetFile:
    rc, _, err, result = run_cli("export", "--corpus", "c", "--root", root, "--out", str(out))
    assert rc == 0, err
    assert result["out"] == str(out)
    return pq.read_table(out)


def test_second_compress_encodes_only_new_and_changed(compressor, tiny_model: Path, tmp_path: Path, root: str) -> None:
    docs = {f"d{i}": make_text(i, 40 + 25 * i) for i in range(5)}
    source = write_docs(tmp_path / "src", docs)
    assert run_cli("ingest", str(source), "--corpus", "c", "--root", root)[0] == 0
    rc, err, first = compress_cli(root, tiny_model, "--shard-size", "2", "--batch-size", "2")
    assert rc == 0, err
    assert SUMMARY_KEYS <= set(first)
    assert (first["documents_compressed"], first["documents_skipped"], first["shards_committed"]) == (5, 0, 3)
    segments_of = lambda text: len(chunk(token_ids(compressor.tokenizer, text), 32))  # noqa: E731
    assert first["segments_written"] == sum(segments_of(t) for t in docs.values())
    assert first["store"].endswith(f"c/embeddings/{first['encoder_key']}")

    old_d2 = docs["d2"]
    docs["d2"] = make_text(102, 130)
    docs.update({f"n{i}": make_text(50 + i, 60) for i in range(3)})
    write_docs(source, docs)
    rc, _, err, ingested = run_cli("ingest", str(source), "--corpus", "c", "--root", root)
    assert rc == 0, err
    assert (ingested["documents_added"], ingested["documents_updated"], ingested["documents_unchanged"]) == (3, 1, 4)

    rc, err, second = compress_cli(root, tiny_model, "--shard-size", "2", "--batch-size", "2")
    assert rc == 0, err
    assert second["encoder_key"] == first["encoder_key"]
    assert (second["documents_compressed"], second["documents_skipped"]) == (4, 4)
    assert second["segments_written"] == sum(segments_of(docs[d]) for d in ("d2", "n0", "n1", "n2"))
    assert second["shards_committed"] == 2

    # readers see the new version of d2, computed from its new text
    store = EmbeddingStore(Store(root), "c", first["encoder_key"])
    got = store.read_document("d2")
    assert got.doc_sha256 == hashlib.sha256(docs["d2"].encode()).hexdigest()
    assert "".join(got.text) == docs["d2"] != old_d2
    want = plain_summaries(compressor.model, chunk(token_ids(compressor.tokenizer, docs["d2"]), 32))
    torch.testing.assert_close(got.summaries, want, atol=1e-5, rtol=0)

    table = export_cli(root, tmp_path / "export.parquet")
    rows = table.to_pylist()
    keys = [(r["doc_id"], r["segment_index"]) for r in rows]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert sorted({r["doc_id"] for r in rows}) == sorted(docs)
    assert len(rows) == sum(segments_of(t) for t in docs.values())
    for doc_id, text in docs.items():
        assert "".join(r["text"] for r in rows if r["doc_id"] == doc_id) == text
    assert table.schema.metadata[b"encoder_key"].decode() == first["encoder_key"]

    # nothing new: nothing written
    before = snapshot(root)
    rc, err, third = compress_cli(root, tiny_model, "--shard-size", "2")
    assert rc == 0, err
    assert (third["documents_compressed"], third["documents_skipped"], third["shards_committed"], third["segments_written"]) == (0, 8, 0, 0)
    assert snapshot(root) == before


@pytest.fixture
def compressed_store(tiny_model: Path, tmp_path: Path, root: str) -> str:
    assert run_cli("ingest", str(write_docs(tmp_path / "src", {"a": make_text(1, 50), "b": make_text(2, 70)})), "--corpus", "c", "--root", root)[0] == 0
    rc, err, _ = compress_cli(root, tiny_model)
    assert rc == 0, err
    return root


def test_missing_model_path_fails_clearly_and_changes_nothing(compressed_store: str, tmp_path: Path) -> None:
    before, records = snapshot(compressed_store), commit_records(compressed_store)
    missing = tmp_path / "no-such-model"
    rc, err, result = compress_cli(compressed_store, missing)
    assert rc == 2 and result is None
    assert str(missing) in err and "does not exist" in err
    assert "Traceback" not in err
    assert snapshot(compressed_store) == before and commit_records(compressed_store) == records


def test_folder_that_is_not_an_autocompressor_fails_clearly(compressed_store: str, tiny_model: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain-llama"
    shutil.copytree(tiny_model, plain)
    config = json.loads((plain / "config.json").read_text())
    del config["summary_length"]
    (plain / "config.json").write_text(json.dumps(config))
    before = snapshot(compressed_store)
    rc, err, _ = compress_cli(compressed_store, plain)
    assert rc == 2
    assert str(plain) in err and "summary_length" in err
    assert snapshot(compressed_store) == before


def test_compress_of_an_empty_corpus_fails_clearly(tiny_model: Path, root: str) -> None:
    rc, err, _ = compress_cli(root, tiny_model)
    assert rc == 2 and "'c'" in err and "lloco ingest" in err


def test_segment_length_option_and_file_url_root(compressor, tiny_model: Path, tmp_path: Path) -> None:
    """--segment-length overrides the checkpoint's value and changes the encoder key; a file:// root
    is the same store as its plain path."""
    text = make_text(5, 120)
    source = write_docs(tmp_path / "src", {"a": text})
    url_root, plain_root = f"file://{tmp_path / 'store'}", str(tmp_path / "store")
    assert run_cli("ingest", str(source), "--corpus", "c", "--root", url_root)[0] == 0
    rc, err, default = compress_cli(url_root, tiny_model)
    assert rc == 0, err
    rc, err, short = compress_cli(plain_root, tiny_model, "--segment-length", "20")
    assert rc == 0, err
    assert short["encoder_key"] != default["encoder_key"] and short["documents_compressed"] == 1
    got = EmbeddingStore(Store(url_root), "c", short["encoder_key"]).read_document("a")
    segments = chunk(token_ids(compressor.tokenizer, text), 20)
    assert [e - s for s, e in zip(got.token_start, got.token_end)] == [len(s) for s in segments]
    torch.testing.assert_close(got.summaries, plain_summaries(compressor.model, segments), atol=1e-5, rtol=0)
    # two encoders now: export must be told which
    rc, _, err, _ = run_cli("export", "--corpus", "c", "--root", plain_root, "--out", str(tmp_path / "o.parquet"))
    assert rc == 2 and "--encoder-key" in err and short["encoder_key"] in err
    rc, _, err, result = run_cli("export", "--corpus", "c", "--root", plain_root, "--out", str(tmp_path / "o.parquet"), "--encoder-key", short["encoder_key"])
    assert rc == 0 and result["rows"] == len(segments)


def test_progress_ticks_at_every_segment_step_not_only_per_batch(compressor, tiny_model: Path, tmp_path: Path, root: str) -> None:
    from lloco_core.config import CompressConfig
    from lloco_core.model.compress import compress

    text = make_text(7, 300)
    source = write_docs(tmp_path / "src", {"long": text, "short": make_text(8, 20)})
    assert run_cli("ingest", str(source), "--corpus", "c", "--root", root)[0] == 0
    calls: list[tuple[int, int]] = []
    summary = compress(CompressConfig(root=root, corpus="c", model=str(tiny_model), device="cpu", batch_size=2), on_batch=lambda d, t: calls.append((d, t)))
    steps = len(chunk(token_ids(compressor.tokenizer, text), 32))
    assert steps >= 3 and len([c for c in calls if c[0] == 0]) == steps, "one tick per segment step of the batch (the long document sets the count)"
    assert sum(d for d, _ in calls) == 2 and sum(t for _, t in calls) == summary.tokens
