"""CompressorConfig: every knob of compressor training (torch-free, shared by the CLI, Python and the
Prefect form).

Defaults follow the AutoCompressor release where it says (summary length 50, accumulation on,
segments of 1,536 tokens, 2 segments per gradient substep, 2 substeps, LoRA r 16 / alpha 16 /
dropout 0.05 on q/k/v/o with `embed_summary` fully trained, gradient clipping 1.0); the learning
rate, batch and step budget are for a user's own base model and data, not the 7B pretraining run.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from lloco_core.config import CorpusConfig, Device, check_name

COMPRESSOR_SETTINGS_EXCLUDED = {"root", "endpoint_url", "corpus", "base", "qa", "out", "output_key", "device", "checkpoint_every", "keep_checkpoints", "revision"}
"""Fields that do not change the trained weights (or enter the compressor key another way)."""


class CompressorConfig(CorpusConfig):
    base: str = Field(description="Base model to turn into an AutoCompressor: a LLaMA-architecture causal LM (local folder or cached hub id), or an AutoCompressor checkpoint to train further.")
    revision: str | None = Field(default=None, description="Hub revision of the base model, when it is a hub id.")
    qa: str | None = Field(default=None, description="QA JSONL (id, doc_id, question, answers) over the corpus's documents for the compress-then-answer objective; empty = AutoCompressor objective only.")
    out: str | None = Field(default=None, description="Local folder to write the trained checkpoint to (usable as --model); default: the store's copy when the root is local, else a local cache folder.")
    output_key: str | None = Field(default=None, description="Folder name under <corpus>/compressors/; default: the content-derived compressor key.")
    # the compressor
    summary_length: int | None = Field(default=None, ge=1, le=4096, description="Summary vectors per segment; default: the base's own if it is an AutoCompressor, else 50 (the published checkpoints).")
    segment_length: int | None = Field(default=None, ge=8, le=32768, description="Tokens per segment (what compress will cut); default: the base's `segment_length`, else 1536.")
    accumulate_summary: bool = Field(default=True, description="Each segment reads the summaries of all earlier segments (the published checkpoints do).")
    max_segments: int = Field(default=80, ge=1, le=10_000, description="Segments of a document read for a question (LLoCO's cap for a 4k decoder); later segments are not used.")
    # objectives
    lm_weight: float = Field(default=1.0, ge=0.0, description="Weight of the AutoCompressor objective: next-token loss per segment given the summaries of earlier segments.")
    qa_weight: float = Field(default=1.0, ge=0.0, description="Weight of the compress-then-answer objective (needs qa): loss on the answer given the summaries of its document.")
    gradient_segments: int = Field(default=2, ge=1, le=1024, description="Gradients flow back through the summaries of at most this many consecutive segments; the summaries passed on from earlier segments are detached (the AutoCompressor objective's segments per substep).")
    lm_substeps: int = Field(default=2, ge=1, le=1024, description="AutoCompressor objective: substeps per training sequence, each of gradient_segments segments of random length (mean segment_length).")
    lm_sequences: int = Field(default=4, ge=1, le=4096, description="AutoCompressor objective: training sequences per optimizer step (cut from the corpus's documents, EOS between documents).")
    qa_documents: int = Field(default=8, ge=1, le=4096, description="Compress-then-answer: documents per optimizer step (each compressed once, all its questions answered).")
    questions_per_document: int | None = Field(default=None, ge=1, le=4096, description="Compress-then-answer: questions per document and step, sampled; default: all of them.")
    max_answer_tokens: int = Field(default=64, ge=1, description="Longer answers are cut to this many tokens (EOS kept).")
    # tuning
    tuning: Literal["full", "lora"] = Field(default="full", description="full: train every weight. lora: LoRA on target_modules (merged into the saved checkpoint) with embed_summary trained in full, as the AutoCompressor-Llama-2 release did.")
    lora_r: int = Field(default=16, ge=1, le=1024, description="LoRA rank (tuning=lora).")
    lora_alpha: int = Field(default=16, ge=1, description="LoRA scaling alpha (tuning=lora).")
    lora_dropout: float = Field(default=0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA input (tuning=lora).")
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"], description="Modules that get LoRA weights (tuning=lora).")
    # optimisation
    learning_rate: float = Field(default=1e-4, gt=0.0, description="Peak learning rate (AdamW).")
    adam_beta2: float = Field(default=0.98, gt=0.0, lt=1.0, description="AdamW beta2 (beta1 0.9).")
    weight_decay: float = Field(default=0.0, ge=0.0, description="AdamW weight decay.")
    lr_scheduler: Literal["cosine", "linear", "constant"] = Field(default="constant", description="Schedule after warmup.")
    warmup_steps: int = Field(default=50, ge=0, description="Optimizer steps of linear warmup.")
    max_steps: int = Field(default=1000, ge=1, le=10_000_000, description="Optimizer steps: training is bounded by steps, never by time, so a run is reproducible.")
    max_grad_norm: float = Field(default=1.0, ge=0.0, description="Gradient clipping (0 = off).")
    seed: int = Field(default=0, description="Seeds data order, segment lengths, question sampling and dropout.")
    # DeepSpeed
    zero_stage: Literal[0, 1, 2] = Field(default=2, description="DeepSpeed ZeRO stage (the saved checkpoint is gathered from stages 0-2).")
    bf16: bool | None = Field(default=None, description="bf16 mixed precision; default: on with CUDA, off on CPU.")
    gradient_checkpointing: bool | None = Field(default=None, description="Recompute activations in backward; default: on with CUDA.")
    device: Device = Field(default="auto", description="auto picks CUDA when present.")
    # checkpoints
    checkpoint_every: int = Field(default=100, ge=1, description="Optimizer steps between checkpoints committed to the store.")
    keep_checkpoints: int = Field(default=1, ge=1, description="Committed checkpoints kept (older ones are deleted after a newer commit).")

    @field_validator("output_key")
    @classmethod
    def _key_is_a_name(cls, value: str | None) -> str | None:
        return None if value is None else check_name(value, "output key")

    @model_validator(mode="after")
    def _some_objective(self) -> CompressorConfig:
        if self.lm_weight == 0 and (self.qa_weight == 0 or not self.qa):
            raise ValueError("nothing to train: lm_weight is 0 and there is no compress-then-answer objective (give qa and a qa_weight above 0)")
        return self

    @property
    def lm_segments(self) -> int:
        """Segments per AutoCompressor-objective training sequence."""
        return self.lm_substeps * self.gradient_segments

    def training_settings(self) -> dict:
        """The fields that change what is trained (part of the compressor key)."""
        settings = self.model_dump(mode="json", exclude=COMPRESSOR_SETTINGS_EXCLUDED)
        if not self.qa:
            settings["qa_weight"] = 0.0
        return settings
