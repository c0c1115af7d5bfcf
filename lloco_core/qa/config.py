"""Typed configs of asking and evaluating, kept free of torch and model imports so the CLI can
parse and validate arguments (and the Prefect UI can render forms) before anything heavy loads."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from lloco_core.config import CorpusConfig, Device, check_name

Task = Literal["qa", "multiple_choice", "query_summary"]
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
    temperature: float = Field(default=1.0, gt=0, description="Sampling temperature (only with do_sample).")
    top_p: float = Field(default=1.0, gt=0, le=1, description="Nucleus sampling mass (only with do_sample).")
    seed: int = Field(default=0, description="Seed for sampling.")
    batch_size: int = Field(default=8, ge=1, le=1024, description="Questions generated together.")
    device: Device = Field(default="auto", description="auto picks CUDA when present.")
    window: int | None = Field(default=None, ge=16, description="Decoder context length; default: the model's max_position_embeddings.")
    max_segments: int | None = Field(default=None, ge=1, description="Cap on segments read per question (LLoCO: 80 for a 4k decoder).")
    retriever: RetrieverKind = Field(default="bm25", description="How segments are ranked when a document exceeds the budget.")
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
    task: Task = Field(default="qa", description="Prompt template: qa, multiple_choice or query_summary.")
    options: list[str] | None = Field(default=None, description="Answer options (multiple_choice).")


class EvaluateConfig(GenerationConfig):
    eval_set: str = Field(description="Eval JSONL: LongBench/QuALITY benchmark file, or a corpus QA file (lines with doc_id).")
    format: Literal["auto", "longbench", "quality", "corpus"] = Field(default="auto", description="auto: a file whose lines have doc_id is a corpus QA file, else the benchmark format is detected.")
    dataset: str | None = Field(default=None, description="LongBench dataset name when records lack a `dataset` field.")
    limit: int | None = Field(default=None, ge=1, description="Evaluate the first N examples only.")
    systems: list[SystemName] = Field(default_factory=lambda: list(ALL_SYSTEMS), min_length=1, description="Systems to compare.")
    top_k: int | None = Field(default=None, ge=1, description="Raw-text retrieval: most segments kept (default: as many as fit the window).")
    force: bool = Field(default=False, description="Recompute even when this eval key has a finished report.")
