"""Typed configs of asking and evaluating, kept free of torch and model imports so the CLI can
parse and validate arguments (and the Prefect UI can render forms) before anything heavy loads."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from lloco_core.config import CorpusConfig, Device, check_name
from lloco_core.qa.prompts import OPTION_LETTERS, TASK_KINDS, Task

DecoderDtype = Literal["auto", "float16", "bfloat16", "float32"]
RetrieverKind = Literal["bm25", "dense"]
SystemName = Literal["no_context", "truncated", "retrieval", "lloco_base", "lloco"]
ALL_SYSTEMS: tuple[str, ...] = ("no_context", "truncated", "retrieval", "lloco_base", "lloco")


class GenerationConfig(CorpusConfig):
    """What decides the model, adapter, context and decoding; shared by `ask` and `evaluate`."""

    model: str | None = Field(default=None, description="Base AutoCompressor checkpoint (folder or hub id); default: the adapter's recorded base model.")
    adapter_key: str | None = Field(default=None, description="Adapter under <root>/<corpus>/adapters/; default: the corpus's newest finished adapter.")
    no_adapter: bool = Field(default=False, description="Answer with the base decoder only.")
    encoder_key: str | None = Field(default=None, description="Embeddings to read; default: the adapter's encoder, else the corpus's only one.")
    max_new_tokens: int = Field(default=64, ge=1, le=4096, description="Most tokens generated per answer.")
    do_sample: bool = Field(default=False, description="Sample instead of greedy decoding.")
    temperature: float = Field(default=1.0, gt=0, description="Sampling temperature (only when sampling: --sample / do_sample).")
    top_p: float = Field(default=1.0, gt=0, le=1, description="Nucleus sampling mass (only when sampling: --sample / do_sample).")
    seed: int = Field(default=0, description="Seed for sampling.")
    batch_size: int = Field(default=8, ge=1, le=1024, description="Questions generated together.")
    device: Device = Field(default="auto", description="auto picks CUDA when present.")
    dtype: DecoderDtype = Field(default="auto", description="Decoder dtype (the official inference ran float16); auto: bfloat16 on CUDA, float32 on CPU.")
    window: int | None = Field(default=None, ge=16, description="Decoder context length for the raw-text baselines and the vLLM command; default: the model's max_position_embeddings.")
    max_segments: int = Field(default=80, ge=1, description="Most segments of a named document the decoder reads, from its start (LLoCO: 80, i.e. 122,880 tokens at 1,536 per segment).")
    retriever: RetrieverKind = Field(default="bm25", description="How segments are ranked for corpus-wide questions and the raw-text retrieval baseline.")
    dense_model: str | None = Field(default=None, description="sentence-transformers model folder for retriever=dense.")

    @model_validator(mode="after")
    def _adapter_choice(self) -> GenerationConfig:
        if self.no_adapter and self.adapter_key:
            raise ValueError("give either adapter_key or no_adapter, not both")
        return self

    @field_validator("adapter_key", "encoder_key")
    @classmethod
    def _key_is_a_name(cls, value: str | None, info: ValidationInfo) -> str | None:
        """Keys name folders under the corpus: one plain path segment, never an escape."""
        return None if value is None else check_name(value, str(info.field_name).replace("_", " "))


class AskConfig(GenerationConfig):
    """One question, from the command line or Python."""

    question: str = Field(min_length=1, description="The question.")
    doc_id: str | None = Field(default=None, description="Document to answer from; default: retrieve over the whole corpus.")
    task: Task | None = Field(default=None, description="Prompt template: qa, or a benchmark's (quality, qasper, narrativeqa, qmsum, hotpotqa); default: quality when options are given, else qa.")
    options: list[str] | None = Field(default=None, description="Answer options (quality / multiple_choice).")
    top_k: int = Field(default=5, ge=1, le=1000, description="Segments retrieved over the whole corpus when the question names no document.")

    @model_validator(mode="after")
    def _task_fits_options(self) -> AskConfig:
        """As in QA files: options make a multiple-choice question, and a multiple-choice template
        needs them (without, `--task quality` rendered an empty "Choices:" list; with `--task qa`,
        the options were dropped without a word)."""
        if self.task is None:
            self.task = "quality" if self.options else "qa"
        multiple_choice = TASK_KINDS[self.task] == "multiple_choice"
        if multiple_choice and not self.options:
            raise ValueError(f"task {self.task!r} needs the answer options (--option, once per option)")
        if self.options and not multiple_choice:
            raise ValueError(f"answer options go with a multiple-choice task (quality), not {self.task!r}")
        if self.options and len(self.options) > len(OPTION_LETTERS):
            raise ValueError(f"at most {len(OPTION_LETTERS)} answer options")
        return self


class EvaluateConfig(GenerationConfig):
    eval_set: str | None = Field(default=None, description="Eval JSONL: LongBench/QuALITY benchmark file, or a corpus QA file (lines with doc_id); default: the adapter's held-out questions.")
    eval_corpus: str | None = Field(default=None, description="Corpus that holds a benchmark's contexts; default: eval-<file name>. Never the corpus being evaluated.")
    format: Literal["auto", "longbench", "quality", "corpus"] = Field(default="auto", description="auto: a file whose lines have doc_id is a corpus QA file, else the benchmark format is detected.")
    dataset: str | None = Field(default=None, description="LongBench dataset name when records lack a `dataset` field.")
    limit: int | None = Field(default=None, ge=1, description="Evaluate the first N examples only.")
    systems: list[SystemName] = Field(default_factory=lambda: list(ALL_SYSTEMS), min_length=1, description="Systems to compare.")
    top_k: int | None = Field(default=None, ge=1, description="Raw-text retrieval baseline: most segments kept (default: as many as fit the window).")
    force: bool = Field(default=False, description="Recompute even when this eval key has a finished report.")

    @field_validator("eval_set")
    @classmethod
    def _local_eval_set_is_absolute(cls, value: str | None) -> str | None:
        """The report and `lloco status` record where the questions came from: `qa/x.jsonl` said
        nothing once the shell had moved on. URLs stay as given."""
        if value is None or "://" in value:
            return value
        return os.path.abspath(os.path.expanduser(value))

    @field_validator("eval_corpus")
    @classmethod
    def _eval_corpus_is_a_name(cls, value: str | None) -> str | None:
        return None if value is None else check_name(value, "eval corpus")

    @model_validator(mode="after")
    def _eval_corpus_is_not_the_corpus(self) -> EvaluateConfig:
        if self.eval_corpus is not None and self.eval_corpus == self.corpus:
            raise ValueError(f"eval_corpus must differ from corpus {self.corpus!r}: benchmark contexts never enter the evaluated corpus")
        return self
