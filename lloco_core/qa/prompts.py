"""Prompt sets: how a question (and its answer, when training) is written after the summary vectors.

A prompt set is part of a trained adapter's interface, so it is saved with each adapter
(`prompts.json`) and inference renders questions with the set the adapter was trained on.

`lloco-paper` (the default) is the official LLoCO protocol, word for word from
jeffreysijuntan/lloco (`finetune_quality.py`, `finetune_scrolls.py`, `finetune_hotpot.py`): no
BOS, one template per dataset (`quality`, `qasper`, `narrativeqa`, `qmsum`, `hotpotqa`), answer
targets as that code writes them (QuALITY: `"B. <option text>"`; the others: the reference
answer), each followed by EOS. `qa` is lloco's plain template for users' own data, worded like
the HotpotQA one. `lloco-v1` is the set lloco used before (BOS first, its own wording, answers
such as `" B"`); adapters trained with it carry it in their `prompts.json` (format version 1) and
keep answering with it.

Task names in QA files: the template names above, plus the older `multiple_choice` and
`query_summary`, which `lloco-paper` reads as `quality` and `qmsum` (see `TEMPLATE_FOR_TASK`).
"""

from __future__ import annotations

import json
import string
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

Kind = Literal["qa", "multiple_choice", "query_summary"]
Task = Literal["qa", "quality", "qasper", "narrativeqa", "qmsum", "hotpotqa", "multiple_choice", "query_summary"]
"""Every task name a QA file, eval set or `--task` may use: the paper's per-dataset templates, the
plain `qa`, and the older `multiple_choice` (read as quality) and `query_summary` (read as qmsum)."""
TASKS: tuple[str, ...] = get_args(Task)
OPTION_LETTERS = string.ascii_uppercase

PAPER_SET = "lloco-paper"
LEGACY_SET = "lloco-v1"
PROMPT_SETS: tuple[str, ...] = (PAPER_SET, LEGACY_SET)

TASK_KINDS: dict[str, Kind] = {
    "qa": "qa",
    "qasper": "qa",
    "narrativeqa": "qa",
    "hotpotqa": "qa",
    "quality": "multiple_choice",
    "qmsum": "query_summary",
    "multiple_choice": "multiple_choice",
    "query_summary": "query_summary",
}
"""The kind of answer each task expects."""

TEMPLATE_FOR_TASK: dict[str, str] = {"multiple_choice": "quality", "query_summary": "qmsum"}
"""Older task names and the `lloco-paper` template that serves them."""

QUALITY_ONE_SHOT = (
    "You are provided a story from above. We will now give you a multiple-choice question with 4 possible answers "
    "(marked by A, B, C, D). Choose the best answer by writing its corresponding letter (either A, B, C, or D).\n"
    "Example question:\nWhere is the capital of France?\n\nChoices:\nA. Berlin\nB. Paris\nC. London\nD. Tokyo\n"
    "Choose the best answer by writing its corresponding letter (either A, B, C, or D).\n\nAnswer:\nB. Paris\n\n"
)
"""`quality_prompt` of the official finetune_quality.py: a one-shot example before the question."""


def kind_of(task: str) -> Kind:
    """The answer kind of a task name; KeyError names the known ones."""
    if task not in TASK_KINDS:
        raise KeyError(f"unknown task {task!r} (use one of {', '.join(TASKS)})")
    return TASK_KINDS[task]


class PromptTemplate(BaseModel):
    """One task's prompt: `template` is a str.format string with {question} and, for multiple
    choice, {options}; `answer_format` writes the training target, with {answer} (the reference
    text, or the option letter for multiple choice) and {option} (the chosen option's text)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Kind = Field(description="What the answer is: free text, an option, or a query-based summary.")
    template: str = Field(description="str.format template with {question} (and {options} for multiple choice).")
    option_format: str = Field(default="{letter}. {text}\n", description="One option, with {letter} and {text}.")
    option_separator: str = Field(default="", description="Text between two rendered options.")
    answer_format: str = Field(default="{answer}", description="The answer target, with {answer} and, for multiple choice, {option}.")
    strip_question: bool = Field(default=False, description="Strip whitespace around the question before rendering (lloco-v1 did).")

    def render(self, question: str, options: list[str] | None = None) -> str:
        rendered = self.option_separator.join(self.option_format.format(letter=OPTION_LETTERS[i], text=t) for i, t in enumerate(options or []))
        return self.template.format(question=question.strip() if self.strip_question else question, options=rendered)

    def answer_text(self, answer: str, options: list[str] | None = None) -> str:
        """The training target for one reference answer (a letter for multiple choice)."""
        option = ""
        if self.kind == "multiple_choice" and options:
            letter = answer.strip()
            if letter not in OPTION_LETTERS[: len(options)]:
                raise ValueError(f"multiple-choice answer {answer!r} is not an option letter")
            option = options[OPTION_LETTERS.index(letter)]
        return self.answer_format.format(answer=answer, option=option)


def _question_template(instruction: str, question_label: str = "\nQuestion: ") -> str:
    return instruction + question_label + "{question}\nAnswer:"


PAPER_TEMPLATES: dict[str, PromptTemplate] = {
    "quality": PromptTemplate(
        kind="multiple_choice",
        template=QUALITY_ONE_SHOT + "Question:\n{question}\n\nChoices:\n{options}"
        "Choose the best answer by writing its corresponding letter (either A, B, C, or D).\n\nAnswer:\n",
        answer_format="{answer}. {option}",
    ),
    "qasper": PromptTemplate(
        kind="qa",
        template=_question_template(
            "You are just given an scientific article from above. I will now give you a question. Answer the question as "
            "concisely as you can, using a single phrase or sentence if possible. If the question cannot be answered based on "
            "the information in the article, write 'unanswerable'. If the question is a yes/no question, answer 'yes', 'no', "
            "or 'unanswerable'."
        ),
    ),
    "narrativeqa": PromptTemplate(
        kind="qa",
        template=_question_template(
            "You are given a story from above, which can be either a novel or a movie script, and a question. Answer the "
            "question as concisely as you can, using a single phrase if possible.",
            "\nQuestion:",
        ),
    ),
    "qmsum": PromptTemplate(
        kind="query_summary",
        template="You are given a meeting transcript from above. I will now give you a query containing a question or "
        "instruction. Answer the query in one or more sentences. \nQuery: {question}\nAnswer:",
    ),
    "hotpotqa": PromptTemplate(
        kind="qa",
        template=_question_template(
            "You were just given an article from above. I will now give you a question. Answer the question as concisely "
            "as you can, using a single phrase or sentence if possible."
        ),
    ),
    "qa": PromptTemplate(
        kind="qa",
        template=_question_template(
            "You were just given a document from above. I will now give you a question. Answer the question as concisely "
            "as you can, using a single phrase or sentence if possible."
        ),
    ),
}
"""The official templates word for word (the dataset name is the key; `narrative_qa` upstream), plus `qa`."""

def _legacy(kind: Kind, template: str) -> PromptTemplate:
    """A lloco-v1 template: options as "(A) text" lines, answers as " <answer>", question stripped."""
    return PromptTemplate(kind=kind, template=template, option_format="({letter}) {text}", option_separator="\n", answer_format=" {answer}", strip_question=True)


LEGACY_TEMPLATES: dict[str, PromptTemplate] = {
    "multiple_choice": _legacy(
        "multiple_choice",
        "Read the document above and answer the multiple-choice question. "
        "Reply with the letter of the correct option only.\n\n"
        "Question: {question}\n\nOptions:\n{options}\n\nAnswer:",
    ),
    "qa": _legacy(
        "qa",
        "Answer the question about the document above as concisely as you can, "
        "using a single phrase if possible.\n\nQuestion: {question}\n\nAnswer:",
    ),
    "query_summary": _legacy(
        "query_summary",
        "The document above is a long text. Answer the query by writing a summary of the relevant "
        "parts of the document in a few sentences.\n\nQuery: {question}\n\nSummary:",
    ),
}
"""lloco's templates before the paper protocol (prompt sets of format version 1)."""


class PromptSet(BaseModel):
    """The templates one adapter was trained with; `to_json`/`from_json` are what the store holds.

    `bos`: whether the prompt starts with the tokenizer's BOS token (the official code adds none).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(default=PAPER_SET, description="Prompt set name: lloco-paper or lloco-v1.")
    bos: bool = Field(default=False, description="Put the BOS token before the prompt tokens.")
    templates: dict[str, PromptTemplate] = Field(default_factory=lambda: dict(PAPER_TEMPLATES))
    version: int = 2

    @model_validator(mode="before")
    @classmethod
    def _read_version_1(cls, data: Any) -> Any:
        """Format 1 (adapters trained before the paper protocol): {"templates": {task: {task,
        template, option_format, answer_prefix}}, "version": 1}, BOS first."""
        if not isinstance(data, dict) or data.get("version") != 1:
            return data
        templates = {}
        for name, t in data.get("templates", {}).items():
            templates[name] = {
                "kind": TASK_KINDS.get(t.get("task", name), "qa"),
                "template": t["template"],
                "option_format": t.get("option_format", "({letter}) {text}"),
                "option_separator": "\n",
                "answer_format": t.get("answer_prefix", " ") + "{answer}",
                "strip_question": True,
            }
        return {"name": LEGACY_SET, "bos": True, "templates": templates, "version": 2}

    def template_name(self, task: str) -> str:
        """The template that serves `task`: its own, the paper template for an older task name, or
        (in a set without per-dataset templates) the one of the task's kind."""
        if task in self.templates:
            return task
        if TEMPLATE_FOR_TASK.get(task) in self.templates:
            return TEMPLATE_FOR_TASK[task]
        kind = TASK_KINDS.get(task)
        if kind in self.templates:
            return kind
        raise KeyError(f"no prompt template for task {task!r} in prompt set {self.name!r} (have: {', '.join(sorted(self.templates))})")

    def for_task(self, task: str) -> PromptTemplate:
        return self.templates[self.template_name(task)]

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> PromptSet:
        return cls.model_validate_json(text)


def legacy_prompts() -> PromptSet:
    return PromptSet(name=LEGACY_SET, bos=True, templates=dict(LEGACY_TEMPLATES))


def prompt_set(name: str = PAPER_SET) -> PromptSet:
    """A prompt set by name."""
    if name == PAPER_SET:
        return PromptSet()
    if name == LEGACY_SET:
        return legacy_prompts()
    raise KeyError(f"unknown prompt set {name!r} (use one of {', '.join(PROMPT_SETS)})")


def default_prompts() -> PromptSet:
    """The paper's protocol: what new adapters are trained with."""
    return PromptSet()
