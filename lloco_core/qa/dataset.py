"""QA training/eval data as JSONL: one question per line, validated before anything runs.

Line fields: `id` (unique), `doc_id` (a document of the corpus), `question`, `answers` (non-empty
list of non-empty strings), optional `options` (multiple choice; answers then name the option
letter, an option's exact text, or both as in `B. Paris`, and are stored as the letter) and
`task`: a prompt template (`qa`, `quality`, `qasper`, `narrativeqa`, `qmsum`, `hotpotqa`) or an
older task name (`multiple_choice` = quality, `query_summary` = qmsum); default `quality` when
options are given, else `qa`. Every error names the file and the line, so a user can fix the data
in one pass.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import fsspec

from lloco_core.errors import InputError
from lloco_core.qa.prompts import OPTION_LETTERS, TASK_KINDS, TASKS
from lloco_core.unicode_text import lone_surrogate

HELDOUT_FILE = "heldout.jsonl"
"""Finetune writes the questions it held out here, in the adapter folder; `lloco evaluate` without
an eval set reads them."""

_LETTER_AND_TEXT = re.compile(r"^\(?([A-Z])\)?[.)]?\s+(.+)$", re.DOTALL)


@dataclass(frozen=True)
class QAItem:
    id: str
    doc_id: str
    question: str
    answers: list[str]
    task: str
    options: list[str] | None = None
    line: int = 0
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class QAData:
    """Validated items plus the hash of the file's bytes (part of the adapter key)."""

    source: str
    items: list[QAItem]
    sha256: str

    @property
    def doc_ids(self) -> set[str]:
        return {item.doc_id for item in self.items}


def _fail(source: str, line: int, message: str) -> InputError:
    return InputError(f"{source}:{line}: {message}")


def _string_list(value: Any, name: str, source: str, line: int) -> list[str]:
    if not isinstance(value, list) or not value:
        raise _fail(source, line, f"'{name}' must be a non-empty list of strings")
    out = []
    for v in value:
        if not isinstance(v, str) or not v.strip():
            raise _fail(source, line, f"'{name}' holds an empty or non-string value {v!r}")
        out.append(v.strip())
    return out


def parse_item(record: Any, source: str, line: int) -> QAItem:
    """One JSON object -> QAItem, or an InputError naming source:line."""
    if not isinstance(record, dict):
        raise _fail(source, line, "each line must be a JSON object")
    for name in ("id", "doc_id", "question"):
        value = record.get(name)
        if isinstance(value, int) and name == "id":
            value = str(value)
        if not isinstance(value, str) or not value.strip():
            raise _fail(source, line, f"missing or empty field '{name}'")
    if "answers" not in record and "answer" in record:
        record = {**record, "answers": [record["answer"]]}
    if "answers" not in record:
        raise _fail(source, line, "missing field 'answers'")
    answers = _string_list(record["answers"], "answers", source, line)
    options = _string_list(record["options"], "options", source, line) if record.get("options") is not None else None
    task = record.get("task") or ("quality" if options else "qa")
    if task not in TASKS:
        raise _fail(source, line, f"unknown task {task!r} (use one of {', '.join(TASKS)})")
    if TASK_KINDS[task] == "multiple_choice":
        if not options:
            raise _fail(source, line, f"task {task!r} needs a non-empty 'options' list")
        if len(options) > len(OPTION_LETTERS):
            raise _fail(source, line, f"at most {len(OPTION_LETTERS)} options")
        letters = OPTION_LETTERS[: len(options)]
        fixed = []
        for a in answers:
            if a in options:
                a = letters[options.index(a)]
            elif (m := _LETTER_AND_TEXT.match(a)) and m.group(1) in letters and m.group(2).strip() == options[letters.index(m.group(1))]:
                a = m.group(1)
            a = a.strip("() .").upper()
            if len(a) != 1 or a not in letters:
                raise _fail(source, line, f"multiple-choice answer {a!r} is not an option letter {letters[0]}-{letters[-1]} or an option's text")
            fixed.append(a)
        answers = fixed
    known = {"id", "doc_id", "question", "answers", "answer", "options", "task"}
    return QAItem(
        id=str(record["id"]).strip(),
        doc_id=record["doc_id"].strip(),
        question=record["question"].strip(),
        answers=answers,
        task=task,
        options=options,
        line=line,
        source=source,
        extra={k: v for k, v in record.items() if k not in known},
    )


def parse_lines(lines: Iterable[str], source: str) -> list[QAItem]:
    items: list[QAItem] = []
    seen: dict[str, int] = {}
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as err:
            raise _fail(source, number, f"malformed JSON ({err.msg} at column {err.colno})") from err
        except RecursionError:
            raise _fail(source, number, "JSON nested too deeply") from None
        if (why := lone_surrogate(record)) is not None:
            raise _fail(source, number, f"line {why}")
        item = parse_item(record, source, number)
        if item.id in seen:
            raise _fail(source, number, f"duplicate id {item.id!r} (first on line {seen[item.id]})")
        seen[item.id] = number
        items.append(item)
    if not items:
        raise InputError(f"{source}: no QA lines found")
    return items


def load_qa(source: str, storage_options: dict[str, Any] | None = None) -> QAData:
    """Read and validate a QA JSONL file from a path or any fsspec URL."""
    try:
        with fsspec.open(source, "rb", **(storage_options or {})) as f:
            raw = f.read()
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read QA file {source!r}: {err}") from err
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"{source}: not UTF-8 text ({err})") from err
    items = parse_lines(text.splitlines(), source)
    return QAData(source, items, hashlib.sha256(raw).hexdigest())


def check_documents(data: QAData, available: Iterable[str], corpus: str, encoder_key: str) -> None:
    """Every QA line must point at a document with committed embeddings; name the first that does not."""
    have = set(available)
    for item in data.items:
        if item.doc_id not in have:
            raise _fail(
                item.source, item.line,
                f"doc_id {item.doc_id!r} has no committed embeddings in corpus {corpus!r} under encoder {encoder_key} "
                "(ingest and compress it first, or fix the doc_id)",
            )


def item_record(item: QAItem) -> dict[str, Any]:
    """The QA line an item was read from (answers normalised), for writing a split back as JSONL."""
    record: dict[str, Any] = {"id": item.id, "doc_id": item.doc_id, "task": item.task, "question": item.question, "answers": item.answers}
    if item.options is not None:
        record["options"] = item.options
    return {**record, **item.extra}


def heldout_documents(doc_ids: Iterable[str], fraction: float, seed: int = 0) -> set[str]:
    """A deterministic share of the documents (by a hash of seed and id, not by file order).

    `round(fraction * n)` documents, at least one when `fraction > 0` and there are two or more
    documents, never all of them (something must be left to train on).
    """
    ids = sorted(set(doc_ids))
    if fraction <= 0 or len(ids) < 2:
        return set()
    count = min(len(ids) - 1, max(1, round(fraction * len(ids))))
    ranked = sorted(ids, key=lambda d: hashlib.sha256(f"{seed}:{d}".encode()).hexdigest())
    return set(ranked[:count])


def split_by_document(items: list[QAItem], fraction: float, seed: int = 0) -> tuple[list[QAItem], list[QAItem]]:
    """(train, held out): every question of a held-out document is held out, so the adapter is
    scored on documents it never saw during training."""
    held = heldout_documents((i.doc_id for i in items), fraction, seed)
    return [i for i in items if i.doc_id not in held], [i for i in items if i.doc_id in held]
