"""Benchmark JSONL loaders: tiny files in each published layout, records with a bad context skipped
and listed, and clear errors for bad files."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from lloco_core.errors import InputError
from lloco_core.qa.evalsets import EvalExample, load_eval_set, read_eval_set


def longbench_record(dataset: str, i: int = 0, **overrides: Any) -> dict[str, Any]:
    record = {
        "input": f"What is item {i}?",
        "context": f"A long document about item {i}.",
        "answers": [f"item {i}", f"the item {i}"],
        "length": 6,
        "dataset": dataset,
        "language": "en",
        "all_classes": None,
        "_id": f"{dataset}-{i}",
    }
    record.update(overrides)
    return record


def quality_article(n_questions: int = 2) -> dict[str, Any]:
    return {
        "article_id": "51274",
        "set_unique_id": "51274_5WNCXT0S",
        "batch_num": "22",
        "title": "The Tower",
        "article": "Once upon a time a tower stood by the sea.",
        "questions": [
            {
                "question": f"Question {k}?",
                "question_unique_id": f"51274_5WNCXT0S_{k}",
                "options": ["sea", "hill", "city", "moon"],
                "gold_label": k,
                "writer_label": k,
                "difficult": 0,
            }
            for k in range(1, n_questions + 1)
        ],
    }


def write_jsonl(path: Path, rows: list[Any]) -> str:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


@pytest.mark.parametrize(
    ("dataset", "task", "metric"),
    [
        ("qasper", "qasper", "qa_f1"),
        ("narrativeqa", "narrativeqa", "qa_f1"),
        ("hotpotqa", "hotpotqa", "hotpot_f1"),
        ("qmsum", "qmsum", "rouge_l"),
    ],
)
def test_longbench_datasets(tmp_path: Path, dataset: str, task: str, metric: str) -> None:
    path = write_jsonl(tmp_path / f"{dataset}.jsonl", [longbench_record(dataset, i) for i in range(3)])
    for fmt in ("auto", "longbench"):
        examples = load_eval_set(path, fmt=fmt)  # type: ignore[arg-type]
        assert len(examples) == 3
        assert examples[1] == EvalExample(
            id=f"{dataset}-1", task=task, dataset=dataset, context="A long document about item 1.",  # type: ignore[arg-type]
            question="What is item 1?", answers=["item 1", "the item 1"], options=None, metric=metric,
        )


def test_longbench_dataset_argument(tmp_path: Path) -> None:
    # records without a `dataset` field take it from the argument; LongBench-E's "_e" suffix is dropped
    rows = [{k: v for k, v in longbench_record("qasper").items() if k != "dataset"}]
    path = write_jsonl(tmp_path / "q.jsonl", rows)
    assert load_eval_set(path, dataset="qasper")[0].metric == "qa_f1"
    with pytest.raises(InputError, match=r"line 1: no `dataset` field"):
        load_eval_set(path)
    path_e = write_jsonl(tmp_path / "hotpotqa_e.jsonl", [longbench_record("hotpotqa_e")])
    assert load_eval_set(path_e, dataset="hotpotqa")[0].dataset == "hotpotqa"
    with pytest.raises(InputError, match=r"'hotpotqa'.*dataset='qasper'"):
        load_eval_set(path_e, dataset="qasper")


def test_quality_official_layout(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "QuALITY.v1.0.1.htmlstripped.dev", [quality_article(2), quality_article(3)])
    examples = load_eval_set(path)
    assert len(examples) == 5
    first = examples[0]
    assert first.id == "51274_5WNCXT0S_1"
    assert (first.task, first.dataset, first.metric) == ("quality", "quality", "accuracy")
    assert first.context == "Once upon a time a tower stood by the sea."
    assert first.options == ["sea", "hill", "city", "moon"]
    assert [e.answers for e in examples] == [["A"], ["B"], ["A"], ["B"], ["C"]]  # gold_label is 1-based


def test_quality_flattened_layout(tmp_path: Path) -> None:
    article = quality_article(1)
    row = {k: v for k, v in article.items() if k != "questions"} | article["questions"][0] | {"gold_label": 4}
    examples = load_eval_set(write_jsonl(tmp_path / "flat.jsonl", [row]), fmt="quality")
    assert examples[0].answers == ["D"] and examples[0].question == "Question 1?"


def test_limit_counts_examples_not_lines(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "q.jsonl", [quality_article(3), "this line is never read"])
    assert [e.id for e in load_eval_set(path, limit=2)] == ["51274_5WNCXT0S_1", "51274_5WNCXT0S_2"]
    assert len(load_eval_set(path, limit=3)) == 3
    assert load_eval_set(path, limit=0) == []


def test_gzip_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "qasper.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.write(json.dumps(longbench_record("qasper")) + "\n\n" + json.dumps(longbench_record("qasper", 1)) + "\n")
    assert len(load_eval_set(str(path))) == 2


@pytest.mark.parametrize(
    ("rows", "fmt", "line", "fault"),
    [
        (["not json at all"], "auto", 1, "not JSON"),
        ([longbench_record("qasper"), "[1, 2]"], "auto", 2, "expected a JSON object"),
        ([{"text": "hello"}], "auto", 1, "cannot tell the format"),
        ([longbench_record("qasper"), {"input": "q", "context": "c"}], "auto", 2, "missing field.*_id.*answers"),
        ([longbench_record("gov_report")], "auto", 1, "unsupported LongBench dataset 'gov_report'"),
        ([longbench_record("qasper", answers=[])], "auto", 1, "`answers` must be a non-empty list"),
        ([quality_article()], "longbench", 1, "missing field"),
        ([longbench_record("qasper")], "quality", 1, "missing field"),
        ([quality_article() | {"questions": [{"question": "q", "options": ["a", "b"], "gold_label": 1}]}],
         "auto", 1, "4 strings"),
        ([quality_article() | {"questions": [{"question": "q", "options": list("abcd"), "gold_label": 0}]}],
         "auto", 1, "1-4"),
        ([quality_article() | {"questions": [{"question": "q", "options": list("abcd")}]}],
         "auto", 1, "unlabelled"),
    ],
)
def test_wrong_format_names_file_and_line(
    tmp_path: Path, rows: list[Any], fmt: str, line: int, fault: str
) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(InputError, match=rf"bad\.jsonl, line {line}: .*{fault}"):
        load_eval_set(path, fmt=fmt)  # type: ignore[arg-type]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="nope.jsonl: no such file"):
        load_eval_set(str(tmp_path / "nope.jsonl"))


def test_bad_contexts_are_skipped_and_listed(tmp_path: Path) -> None:
    rows = [
        longbench_record("qasper", 0, context=""),
        longbench_record("qasper", 1),
        longbench_record("qasper", 2, context=None),
        longbench_record("qasper", 3, context="   \n"),
    ]
    got = read_eval_set(write_jsonl(tmp_path / "lb.jsonl", rows))
    assert [e.id for e in got.examples] == ["qasper-1"]
    assert [s.as_dict() for s in got.skipped] == [
        {"item": f"{tmp_path}/lb.jsonl, line 1 (id 'qasper-0')", "reason": "context is empty"},
        {"item": f"{tmp_path}/lb.jsonl, line 3 (id 'qasper-2')", "reason": "context is not a string (NoneType)"},
        {"item": f"{tmp_path}/lb.jsonl, line 4 (id 'qasper-3')", "reason": "context is empty"},
    ]
    empty_article = quality_article(2) | {"article": ""}
    got = read_eval_set(write_jsonl(tmp_path / "q.jsonl", [empty_article, quality_article(1)]))
    assert len(got.examples) == 1 and got.skipped[0].item.endswith("line 1 (article '51274_5WNCXT0S', 2 questions)")
    assert got.skipped[0].reason == "article is empty"
