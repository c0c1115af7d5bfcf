"""Evaluation: every system on the same examples, benchmark contexts go into their own corpus (the
evaluated corpus stays byte-identical), bad records are listed, outputs land under the eval key, a
re-run is cached, and bad input fails clearly."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from lloco.cli import main
from lloco_core.errors import InputError
from lloco_core.qa.config import ALL_SYSTEMS, EvaluateConfig
from lloco_core.qa.evaluate import eval_corpus_name, eval_doc_id, evaluate, truncate_middle
from lloco_core.store.documents import DocumentTable
from lloco_core.store.embeddings import export, list_encoders
from lloco_core.store.storage import Store
from tests.adapter_helpers import corpus_with_adapter
from tests.conftest import make_text


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_model):
    tmp = tmp_path_factory.mktemp("evaluate")
    root, encoder_key = corpus_with_adapter(tmp, tiny_model)
    bench = tmp / "qasper.jsonl"
    records = [
        {"_id": f"q{i}", "input": f"Which {w} stands by the river?", "context": make_text(40 + i % 2, 500), "answers": [w], "dataset": "qasper"}
        for i, w in enumerate(["castle", "tower", "bridge"])
    ]
    empty = {"_id": "q-empty", "input": "Which one?", "context": "", "answers": ["none"], "dataset": "qasper"}
    bench.write_text("".join(json.dumps(r) + "\n" for r in [*records[:2], empty, records[2]]))
    qa = tmp / "qa.jsonl"
    qa.write_text(
        json.dumps({"id": "a1", "doc_id": "alpha", "question": "Who rides north?", "answers": ["the king"]}) + "\n"
        + json.dumps({"id": "b1", "doc_id": "beta", "question": "Which season?", "options": ["winter", "summer", "spring", "autumn"], "answers": ["A"]}) + "\n"
    )
    return root, encoder_key, bench, qa, records


def settings(root, **extra):
    return dict(root=root, corpus="c", device="cpu", max_new_tokens=6, window=384, batch_size=4, **extra)


def corpus_state(root: str, corpus: str, out: Path) -> dict[str, str]:
    """sha256 of every document part, shard and commit record of a corpus, and of its export."""
    folder = Path(root) / corpus
    state = {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file() and p.parts[len(folder.parts)] in ("documents", "embeddings")}
    export(Store(root), corpus, str(out))
    state["export"] = hashlib.sha256(out.read_bytes()).hexdigest()
    return state


def test_benchmark_eval_compares_all_systems_and_writes_report(setup, tmp_path):
    root, encoder_key, bench, _, records = setup
    before = corpus_state(root, "c", tmp_path / "before.parquet")
    summary = evaluate(EvaluateConfig(eval_set=str(bench), **settings(root)))
    store = Store(root)
    # the evaluated corpus is byte-identical: its document commits, shard commits and export
    assert corpus_state(root, "c", tmp_path / "after.parquet") == before
    assert any(k.startswith("documents/_commits/") for k in before) and any("/_commits/" in k and k.startswith("embeddings/") for k in before)
    # the contexts went into their own corpus (two distinct contexts: content-hashed ids), compressed under the same encoder
    assert summary["eval_corpus"] == eval_corpus_name(str(bench)) == "eval-qasper" != summary["corpus"]
    assert set(DocumentTable(store, "eval-qasper").current()) == {eval_doc_id("qasper", r["context"]) for r in records}
    assert list_encoders(store, "eval-qasper") == [encoder_key] == [summary["encoder_key"]]
    # the record with an empty context is listed, never ingested
    assert summary["skipped"] == [{"item": f"{bench}, line 3 (id 'q-empty')", "reason": "context is empty"}]
    assert summary["examples"] == 3 and summary["prompt_set"] == "lloco-paper"
    assert list(summary["systems"]) == list(ALL_SYSTEMS) and summary["adapter_key"] == "ad-test"
    s = summary["systems"]
    assert s["lloco"]["mean_prompt_tokens"] < s["truncated"]["mean_prompt_tokens"] <= 384
    assert s["lloco"]["compression_ratio"] > 1 and s["no_context"]["mean_prompt_tokens"] < s["lloco"]["mean_prompt_tokens"]
    folder = summary["out"]
    assert summary["eval_key"] in folder
    rows = [json.loads(line) for line in open(f"{folder}/predictions.jsonl")]
    assert len(rows) == 3 * len(ALL_SYSTEMS)
    for row in rows:
        assert {"prediction", "references", "score", "prompt_tokens", "latency_s"} <= set(row)
        assert 0.0 <= row["score"] <= 1.0 and row["latency_s"] > 0
    report = open(f"{folder}/report.md").read()
    assert "rouge-score" in report and "LLoCO + adapter" in report and "compression ratio" in report
    assert open(f"{folder}/plot.png", "rb").read(4) == b"\x89PNG"
    again = evaluate(EvaluateConfig(eval_set=str(bench), **settings(root)))
    assert again["cached"] is True and again["eval_key"] == summary["eval_key"]
    other = evaluate(EvaluateConfig(eval_set=str(bench), systems=["lloco"], **settings(root)))
    assert other["eval_key"] != summary["eval_key"] and list(other["systems"]) == ["lloco"]


def test_cli_shows_progress_of_compressing_contexts_and_of_answers(setup, capsys):
    """An evaluation was silent from start to end: the benchmark's contexts compressing, then every system answering."""
    root, _, bench, _, _ = setup
    argv = ["evaluate", str(bench), "--corpus", "c", "--root", root, "--device", "cpu", "--max-new-tokens", "2", "--batch-size", "2"]
    code = main([*argv, "--eval-corpus", "eval-progress", "--systems", "no_context,lloco", "--progress", "json"])
    assert code == 0
    err = capsys.readouterr().err
    lines = [json.loads(line.removeprefix("lloco-progress ")) for line in err.splitlines() if line.startswith("lloco-progress ")]
    compress = [line for line in lines if line["task"].startswith("compress")]
    answers = [line for line in lines if line["task"] == "evaluate"]
    assert compress and compress[-1]["done"] == compress[-1]["total"] == 2, "the two distinct contexts compress with progress"
    assert answers[-1]["done"] == answers[-1]["total"] == 2 * 3 and answers[-1]["unit"] == "answer" and answers[-1]["system"] == "lloco"


def test_corpus_qa_file_and_cli(setup, capsys):
    root, _, _, qa, _ = setup
    code = main(["evaluate", str(qa), "--corpus", "c", "--root", root, "--device", "cpu", "--max-new-tokens", "4", "--systems", "lloco,lloco_base,retrieval"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["examples"] == 2 and set(summary["systems"]) == {"lloco", "lloco_base", "retrieval"}
    rows = [json.loads(line) for line in open(f"{summary['out']}/predictions.jsonl")]
    assert {r["metric"] for r in rows} == {"qa_f1", "accuracy"}


def test_bad_input(setup, tmp_path):
    root, _, bench, _, _ = setup
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text(json.dumps({"title": "x", "body": "y"}) + "\n")
    with pytest.raises(InputError, match="cannot tell the format"):
        evaluate(EvaluateConfig(eval_set=str(wrong), **settings(root)))
    bad_doc = tmp_path / "qa.jsonl"
    bad_doc.write_text(json.dumps({"id": "x", "doc_id": "nowhere", "question": "q?", "answers": ["a"]}) + "\n")
    with pytest.raises(InputError, match="document 'nowhere' is not in corpus 'c'"):
        evaluate(EvaluateConfig(eval_set=str(bad_doc), **settings(root)))
    with pytest.raises(InputError, match="no finished adapter 'missing'"):
        evaluate(EvaluateConfig(eval_set=str(bench), adapter_key="missing", **settings(root)))
    with pytest.raises(InputError, match="no such file"):
        evaluate(EvaluateConfig(eval_set=str(tmp_path / "absent.jsonl"), **settings(root)))
    with pytest.raises(InputError, match="adapter 'ad-test' of corpus 'c' held out no questions"):
        evaluate(EvaluateConfig(**settings(root)))  # no eval set, and this adapter recorded no held-out part
    with pytest.raises(ValueError, match="eval_corpus must differ"):
        EvaluateConfig(eval_set=str(bench), eval_corpus="c", **settings(root))
    all_empty = tmp_path / "empty-contexts.jsonl"
    all_empty.write_text(json.dumps({"_id": "e", "input": "q?", "context": " ", "answers": ["a"], "dataset": "qasper"}) + "\n")
    with pytest.raises(InputError, match=r"no examples \(1 records skipped, .*context is empty"):
        evaluate(EvaluateConfig(eval_set=str(all_empty), **settings(root)))
    assert not (Path(root) / "eval-empty-contexts").exists()


def test_truncate_middle_keeps_both_ends():
    assert truncate_middle(list(range(10)), 4) == [0, 1, 8, 9]
    assert truncate_middle([1, 2], 5) == [1, 2] and truncate_middle([1, 2], 0) == []


def test_decoder_dtype_is_part_of_the_eval_key():
    from lloco_core.qa.evaluate import eval_key

    config = EvaluateConfig(corpus="c", eval_set="qasper.jsonl")
    key = eval_key(config, "ad", "enc", "sha", "weights")
    assert eval_key(config.model_copy(update={"dtype": "float16"}), "ad", "enc", "sha", "weights") != key
    assert eval_key(config.model_copy(update={"batch_size": 2, "device": "cpu"}), "ad", "enc", "sha", "weights") == key


def test_a_local_eval_set_is_recorded_by_its_absolute_path(tmp_path, monkeypatch):
    """`lloco status` listed `qa/x.jsonl` for an evaluation: where that was depended on a shell long gone."""
    monkeypatch.chdir(tmp_path)
    assert EvaluateConfig(corpus="c", eval_set="qa/x.jsonl").eval_set == str(tmp_path / "qa" / "x.jsonl")
    assert EvaluateConfig(corpus="c", eval_set="s3://bucket/qa/x.jsonl").eval_set == "s3://bucket/qa/x.jsonl"
    assert EvaluateConfig(corpus="c").eval_set is None
