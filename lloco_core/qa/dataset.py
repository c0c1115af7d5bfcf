"""QA training/eval data as JSONL: one question per line, validated before anything runs.

Line fields: `id` (unique), `doc_id` (a document of the corpus), `question`, `answers` (non-empty
list of non-empty strings), optional `options` (multiple choice; answers then name the option
letter, or an option's exact text, which is turned into its letter) and `task` (`qa`,
`multiple_choice`, `query_summary`; default `multiple_choice` when options are given, else `qa`).
Every error names the file and the line, so a user can fix the data in one pass.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import fsspec

from lloco_core.errors import InputError
from lloco_core.qa.prompts import OPTION_LETTERS, TASKS
from lloco_core.unicode_text import lone_surrogate


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
    task = record.get("task") or ("multiple_choice" if options else "qa")
    if task not in TASKS:
        raise _fail(source, line, f"unknown task {task!r} (use one of {', '.join(TASKS)})")
    if task == "multiple_choice":
        if not options:
            raise _fail(source, line, "task 'multiple_choice' needs a non-empty 'options' list")
        letters = OPTION_LETTERS[: len(options)]
        fixed = []
        for a in answers:
            if a in options:
                a = letters[options.index(a)]
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
