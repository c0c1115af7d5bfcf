"""Prompt templates per task, saved with each adapter (`prompts.json`) so inference renders the
question exactly as training did.

The summary vectors come first in the decoder input (see `decoder.py`); the prompt text follows
them, so templates speak of "the document above". Styles follow the papers' datasets: QuALITY
multiple choice (answer = the option letter), open QA (LongBench/Qasper style, short answer),
QMSum query-based summary.
"""

from __future__ import annotations

import json
import string
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Task = Literal["qa", "multiple_choice", "query_summary"]
TASKS: tuple[str, ...] = ("qa", "multiple_choice", "query_summary")
OPTION_LETTERS = string.ascii_uppercase


class PromptTemplate(BaseModel):
    """One task's prompt: `template` is a str.format string with {question} and, for multiple
    choice, {options}; the answer follows the rendered prompt after `answer_prefix`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: Task
    template: str = Field(description="str.format template with {question} (and {options} for multiple choice).")
    option_format: str = Field(default="({letter}) {text}", description="One option line, with {letter} and {text}.")
    answer_prefix: str = Field(default=" ", description="Text between the prompt and the answer (tokenized with the answer).")

    def render(self, question: str, options: list[str] | None = None) -> str:
        lines = "\n".join(self.option_format.format(letter=OPTION_LETTERS[i], text=t) for i, t in enumerate(options or []))
        return self.template.format(question=question.strip(), options=lines)

    def answer_text(self, answer: str) -> str:
        return self.answer_prefix + answer.strip()


DEFAULT_TEMPLATES: dict[str, PromptTemplate] = {
    "multiple_choice": PromptTemplate(
        task="multiple_choice",
        template=(
            "Read the document above and answer the multiple-choice question. "
            "Reply with the letter of the correct option only.\n\n"
            "Question: {question}\n\nOptions:\n{options}\n\nAnswer:"
        ),
    ),
    "qa": PromptTemplate(
        task="qa",
        template=(
            "Answer the question about the document above as concisely as you can, "
            "using a single phrase if possible.\n\nQuestion: {question}\n\nAnswer:"
        ),
    ),
    "query_summary": PromptTemplate(
        task="query_summary",
        template=(
            "The document above is a long text. Answer the query by writing a summary of the relevant "
            "parts of the document in a few sentences.\n\nQuery: {question}\n\nSummary:"
        ),
    ),
}


class PromptSet(BaseModel):
    """The templates one adapter was trained with; `to_json`/`from_json` are what the store holds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    templates: dict[str, PromptTemplate] = Field(default_factory=lambda: dict(DEFAULT_TEMPLATES))
    version: int = 1

    def for_task(self, task: str) -> PromptTemplate:
        if task not in self.templates:
            raise KeyError(f"no prompt template for task {task!r} (have: {sorted(self.templates)})")
        return self.templates[task]

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> PromptSet:
        return cls.model_validate_json(text)


def default_prompts() -> PromptSet:
    return PromptSet()
