"""Loaders for the published JSONL files of long-context benchmarks, from a local path or fsspec URL.

Each benchmark question becomes one ``EvalExample`` that carries its prompt template (the paper's
template of its dataset) and its metric name, so scoring never needs to know which benchmark an
example came from. Files are read as published (LongBench's ``data/*.jsonl``; QuALITY's own
``QuALITY.v1.0.1.htmlstripped.*``: ``article_id``, ``article``, ``questions`` with ``question``,
``options``, 1-based ``gold_label``, ``question_unique_id``), streamed line by line so ``limit``
reads only what it needs. A record whose context is empty or not a string is skipped and listed
(``Skipped``, as ingest lists bad documents): it never becomes a document. A malformed file stops
with an ``InputError`` naming file, line and fault.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lloco_core.errors import InputError
from lloco_core.qa.metrics import METRICS
from lloco_core.qa.prompts import Task
from lloco_core.store.sources import Skipped
from lloco_core.store.storage import open_url
from lloco_core.unicode_text import lone_surrogate

Format = Literal["auto", "longbench", "quality"]

LONGBENCH_DATASETS: dict[str, tuple[Task, str]] = {
    "qasper": ("qasper", "qa_f1"),
    "narrativeqa": ("narrativeqa", "qa_f1"),
    "hotpotqa": ("hotpotqa", "hotpot_f1"),
    "qmsum": ("qmsum", "rouge_l"),
}
"""LongBench datasets we evaluate: prompt template (the paper's, by dataset) and metric (LongBench's
choice, HotpotQA's official F1)."""

LONGBENCH_FIELDS = ("_id", "input", "context", "answers")
QUALITY_FIELDS = ("article", "questions")
QUALITY_FLAT_FIELDS = ("article", "question", "options", "gold_label")
LETTERS = "ABCD"
CONTEXT_FIELDS = ("context", "article")


class EvalExample(BaseModel):
    """One question over one long context, with the references and the metric that scores it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(description="Benchmark's own id (LongBench `_id`, QuALITY `question_unique_id`).")
    task: Task = Field(description="Prompt template, e.g. quality or qasper (lloco_core.qa.prompts).")
    dataset: str = Field(description="Benchmark dataset name, e.g. qasper or quality.")
    context: str = Field(description="The long document the question is about.")
    question: str = Field(description="The question or query, without the context.")
    answers: list[str] = Field(min_length=1, description="References; for multiple choice the gold letter.")
    options: list[str] | None = Field(default=None, description="Answer options (multiple choice only).")
    metric: str = Field(description="Key into lloco_core.qa.metrics.METRICS.")

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        if value not in METRICS:
            raise ValueError(f"unknown metric {value!r}; known: {sorted(METRICS)}")
        return value


@dataclass
class EvalSet:
    """A benchmark file's usable examples and the records skipped for a bad context."""

    examples: list[EvalExample] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def context_fault(context: Any) -> str | None:
    """Why a benchmark context cannot become a document (ingest's rules), or None."""
    if not isinstance(context, str):
        return f"context is not a string ({type(context).__name__})"
    if not context.strip():
        return "context is empty"
    if (why := lone_surrogate(context)) is not None:
        return f"context {why}"
    return None


def _records(path: str, endpoint_url: str | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, JSON object) for each non-blank line; compression inferred from the suffix."""
    try:
        with open_url(path, "rt", endpoint_url, encoding="utf-8", compression="infer") as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputError(f"{path}, line {lineno}: not JSON ({exc.msg})") from None
                except RecursionError:
                    raise InputError(f"{path}, line {lineno}: JSON nested too deeply") from None
                if not isinstance(record, dict):
                    raise InputError(f"{path}, line {lineno}: expected a JSON object, got {type(record).__name__}")
                if (why := lone_surrogate({k: v for k, v in record.items() if k not in CONTEXT_FIELDS})) is not None:
                    raise InputError(f"{path}, line {lineno}: record {why}")  # a bad context is skipped instead (context_fault)
                yield lineno, record
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason})") from None


def _require(record: dict[str, Any], fields: tuple[str, ...], where: str, fmt: str) -> None:
    missing = [f for f in fields if f not in record]
    if missing:
        raise InputError(f"{where}: missing field(s) {', '.join(missing)} for {fmt} format")


def _detect(record: dict[str, Any], where: str) -> Literal["longbench", "quality"]:
    """Format from the first record's keys."""
    if all(f in record for f in LONGBENCH_FIELDS):
        return "longbench"
    if all(f in record for f in QUALITY_FIELDS) or all(f in record for f in QUALITY_FLAT_FIELDS):
        return "quality"
    raise InputError(
        f"{where}: cannot tell the format from keys {sorted(record)}; expected LongBench "
        f"({', '.join(LONGBENCH_FIELDS)}), QuALITY ({', '.join(QUALITY_FIELDS)}) or a corpus QA file (id, doc_id, question, answers)"
    )


def _longbench(record: dict[str, Any], where: str, dataset: str | None) -> Iterator[EvalExample | Skipped]:
    _require(record, LONGBENCH_FIELDS, where, "LongBench")
    name = record.get("dataset") or dataset
    if not name:
        raise InputError(f"{where}: no `dataset` field; pass dataset= ({', '.join(LONGBENCH_DATASETS)})")
    if not isinstance(name, str):
        raise InputError(f"{where}: `dataset` must be a string, got {name!r}")
    name = name.removesuffix("_e")  # LongBench-E files share the dataset's task and metric
    if dataset and name != dataset:
        raise InputError(f"{where}: record is from dataset {name!r}, but dataset={dataset!r} was asked for")
    if name not in LONGBENCH_DATASETS:
        raise InputError(f"{where}: unsupported LongBench dataset {name!r}; supported: {', '.join(LONGBENCH_DATASETS)}")
    answers = record["answers"]
    if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
        raise InputError(f"{where}: `answers` must be a non-empty list of strings")
    task, metric = LONGBENCH_DATASETS[name]
    if (fault := context_fault(record["context"])) is not None:
        yield Skipped(f"{where} (id {record['_id']!r})", fault)
        return
    yield EvalExample(
        id=str(record["_id"]), task=task, dataset=name, context=record["context"],
        question=record["input"], answers=answers, metric=metric,
    )


def _quality_question(article: str, q: dict[str, Any], qid: str, where: str) -> EvalExample:
    if "gold_label" not in q:
        raise InputError(f"{where}: question {qid} has no `gold_label` (the QuALITY test split is unlabelled)")
    _require(q, ("question", "options"), where, "QuALITY")
    options, gold = q["options"], q["gold_label"]
    if not isinstance(options, list) or len(options) != 4:
        raise InputError(f"{where}: question {qid}: `options` must be a list of 4 strings")
    if not isinstance(gold, int) or not 1 <= gold <= 4:
        raise InputError(f"{where}: question {qid}: `gold_label` must be 1-4 (1-based), got {gold!r}")
    return EvalExample(
        id=qid, task="quality", dataset="quality", context=article, question=q["question"],
        answers=[LETTERS[gold - 1]], options=[str(o) for o in options], metric="accuracy",
    )


def _quality(record: dict[str, Any], where: str, lineno: int) -> Iterator[EvalExample | Skipped]:
    """Official layout (one article, many `questions`) or the flattened one-question-per-row layout
    (as in the Hugging Face ``tasksource/QuALITY`` export)."""
    if "questions" not in record:
        _require(record, QUALITY_FLAT_FIELDS, where, "QuALITY")
        qid = record.get("question_unique_id") or f"quality_line{lineno}"
        if (fault := context_fault(record["article"])) is not None:
            yield Skipped(f"{where} (question {qid!r})", fault.replace("context", "article"))
            return
        yield _quality_question(record["article"], record, str(qid), where)
        return
    _require(record, QUALITY_FIELDS, where, "QuALITY")
    if not isinstance(record["questions"], list):
        raise InputError(f"{where}: `questions` must be a list")
    base = record.get("set_unique_id") or record.get("article_id") or "quality"
    if (fault := context_fault(record["article"])) is not None:
        yield Skipped(f"{where} (article {base!r}, {len(record['questions'])} questions)", fault.replace("context", "article"))
        return
    for i, q in enumerate(record["questions"], start=1):
        if not isinstance(q, dict):
            raise InputError(f"{where}: question {i} is not a JSON object")
        yield _quality_question(record["article"], q, str(q.get("question_unique_id") or f"{base}_{i}"), where)


def read_eval_set(path: str, fmt: Format = "auto", dataset: str | None = None, limit: int | None = None, endpoint_url: str | None = None) -> EvalSet:
    """Read a benchmark JSONL file: its ``EvalExample``s and the records skipped for a bad context.

    ``fmt="auto"`` decides from the first record's keys. ``dataset`` names the LongBench dataset
    when records lack a ``dataset`` field, and is checked against it when they have one.
    ``limit`` stops after that many examples (QuALITY articles hold several questions).
    ``endpoint_url``: the store's S3 endpoint, for an s3:// path.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0 or None, got {limit}")
    if fmt == "quality" and dataset not in (None, "quality"):
        raise InputError(f"{path}: dataset={dataset!r} does not match format 'quality'")
    out = EvalSet()
    if limit == 0:
        return out
    for lineno, record in _records(path, endpoint_url):
        where = f"{path}, line {lineno}"
        if fmt == "auto":
            fmt = _detect(record, where)
        parsed = _longbench(record, where, dataset) if fmt == "longbench" else _quality(record, where, lineno)
        try:
            for example in parsed:
                if isinstance(example, Skipped):
                    out.skipped.append(example)
                    continue
                out.examples.append(example)
                if limit is not None and len(out.examples) >= limit:
                    return out
        except ValidationError as exc:
            faults = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise InputError(f"{where}: bad field value ({faults})") from None
    return out


def load_eval_set(path: str, fmt: Format = "auto", dataset: str | None = None, limit: int | None = None) -> list[EvalExample]:
    """The usable examples of a benchmark file (`read_eval_set` also lists the skipped records)."""
    return read_eval_set(path, fmt, dataset, limit).examples
