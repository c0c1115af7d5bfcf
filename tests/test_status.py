"""`lloco status` reports what a store holds, through the store APIs, and writes nothing: two
corpora after ingest, compress, a finished adapter (and an unfinished one) and an evaluation."""

from __future__ import annotations

import json
from pathlib import Path

from lloco_core.config import IngestConfig
from lloco_core.qa.config import EvaluateConfig
from lloco_core.qa.evaluate import evaluate
from lloco_core.store.documents import ingest
from tests.adapter_helpers import compressed_corpus, save_adapter
from tests.conftest import make_text
from tests.fixtures_compress import run_cli, snapshot


def test_status_counts_two_corpora_at_every_stage(tmp_path: Path, tiny_model: Path) -> None:
    root = str(tmp_path / "store")
    # corpus "alpha": 3 documents compressed, one finished adapter, one evaluation
    alpha_key = compressed_corpus(tmp_path, tiny_model, root, corpus="alpha")
    save_adapter(tiny_model, root, corpus="alpha", key="ad-alpha", encoder_key=alpha_key)
    save_adapter(tiny_model, root, corpus="alpha", key="ad-unfinished", publish=False)
    qa = tmp_path / "qa.jsonl"
    qa.write_text(json.dumps({"id": "q1", "doc_id": "alpha", "question": "Who rides north?", "answers": ["the king"]}) + "\n")
    report = evaluate(EvaluateConfig(root=root, corpus="alpha", eval_set=str(qa), systems=["lloco"], device="cpu", max_new_tokens=2, window=256))
    # corpus "beta": 2 documents compressed, then one new and one changed document ingested (2 pending)
    beta_key = compressed_corpus(tmp_path, tiny_model, root, corpus="beta", docs={"one": make_text(11, 80), "two": make_text(12, 60)})
    more = tmp_path / "beta-more"
    more.mkdir()
    (more / "two.txt").write_text(make_text(13, 60))
    (more / "three.txt").write_text(make_text(14, 60))
    ingest(IngestConfig(root=root, corpus="beta", source=str(more)))

    before = snapshot(root)
    rc, _, err, result = run_cli("status", "--root", root)
    assert rc == 0, err
    assert snapshot(root) == before, "status must not write anything"
    assert result is not None and [c["corpus"] for c in result["corpora"]] == ["alpha", "beta"]
    alpha, beta = result["corpora"]

    assert alpha["documents"] == 3 and alpha["documents_uncompressed"] == 0
    assert alpha["encoders"] == [{"encoder_key": alpha_key, "documents_compressed": 3, "documents_pending": 0, "shards": 1}]
    assert [a["adapter_key"] for a in alpha["adapters"]] == ["ad-alpha"] and alpha["adapters"][0]["encoder_key"] == alpha_key
    assert alpha["adapters"][0]["finished"].endswith("+00:00")
    assert alpha["training"] == [{"adapter_key": "ad-unfinished", "checkpoint_step": None}]
    assert alpha["evals"] == [{"eval_key": report["eval_key"], "eval_set": str(qa), "examples": 1, "adapter_key": "ad-alpha", "scores": {"lloco": report["systems"]["lloco"]["score"]}}]

    assert beta["documents"] == 3 and beta["documents_uncompressed"] == 2  # "three" is new, "two" changed: neither current version is compressed
    assert beta["encoders"] == [{"encoder_key": beta_key, "documents_compressed": 1, "documents_pending": 2, "shards": 1}]
    assert beta["adapters"] == [] and beta["evals"] == []

    rc, _, err, only = run_cli("status", "--root", root, "--corpus", "beta")
    assert rc == 0 and only is not None and only["corpora"] == [beta], err
