"""FinetuneConfig: every knob of a finetune, with the LLoCO paper's defaults.

The same model serves the CLI, the Python API and the Prefect flow form.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ValidationInfo, Field, field_validator

from lloco_core.config import CorpusConfig, Device, check_name
from lloco_core.qa.prompts import PAPER_SET

SETTINGS_EXCLUDED = {"root", "endpoint_url", "corpus", "qa", "model", "output_key", "device", "checkpoint_every", "keep_checkpoints", "encoder_key"}
"""Fields that do not change the trained numbers (or enter the adapter key another way)."""


class FinetuneConfig(CorpusConfig):
    model: str = Field(description="Base AutoCompressor checkpoint (the one that compressed the corpus): a local folder or a cached hub id.")
    qa: str = Field(description="QA JSONL (path or fsspec URL): id, doc_id, question, answers, optional options and task.")
    holdout: float = Field(default=0.2, ge=0.0, lt=1.0, description="Share of the QA file's documents held out from training (deterministic, by document) for `lloco evaluate` without an eval set; 0 trains on everything.")
    prompt_set: Literal["lloco-paper", "lloco-v1"] = Field(default=PAPER_SET, description="Prompt templates: lloco-paper (the official LLoCO protocol, no BOS) or lloco-v1 (lloco's earlier templates, BOS first).")
    encoder_key: str | None = Field(default=None, description="Embeddings to train on; default: the corpus's only encoder key.")
    output_key: str | None = Field(default=None, description="Adapter folder name under <corpus>/adapters/; default: the content-derived adapter key.")
    # LoRA (paper: r 8, alpha 16, dropout 0.05 on q/k/v/o)
    lora_r: int = Field(default=8, ge=1, le=1024, description="LoRA rank.")
    lora_alpha: int = Field(default=16, ge=1, description="LoRA scaling alpha.")
    lora_dropout: float = Field(default=0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA input.")
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"], description="Modules that get LoRA weights.")
    # optimisation (paper: lr 2e-5 cosine, warmup 0.04, 3 epochs)
    learning_rate: float = Field(default=2e-5, gt=0.0, description="Peak learning rate (AdamW).")
    lr_scheduler: Literal["cosine", "linear", "constant"] = Field(default="cosine", description="Schedule after warmup.")
    warmup_ratio: float = Field(default=0.04, ge=0.0, lt=1.0, description="Share of optimizer steps spent warming up.")
    weight_decay: float = Field(default=0.0, ge=0.0, description="AdamW weight decay.")
    epochs: int = Field(default=3, ge=1, le=1000, description="Passes over the QA set.")
    max_steps: int | None = Field(default=None, ge=1, description="Stop after this many optimizer steps (overrides epochs when smaller).")
    micro_batch_size: int = Field(default=1, ge=1, le=1024, description="Examples per device per micro step.")
    gradient_accumulation_steps: int = Field(default=1, ge=1, le=1024, description="Micro steps per optimizer step.")
    max_grad_norm: float = Field(default=1.0, ge=0.0, description="Gradient clipping (0 = off).")
    seed: int = Field(default=0, description="Seeds LoRA init, data order and dropout.")
    # DeepSpeed
    zero_stage: Literal[0, 1, 2, 3] = Field(default=2, description="DeepSpeed ZeRO stage (paper: 2).")
    bf16: bool | None = Field(default=None, description="bf16 mixed precision; default: on with CUDA, off on CPU.")
    gradient_checkpointing: bool | None = Field(default=None, description="Recompute activations; default: on with CUDA.")
    device: Device = Field(default="auto", description="auto picks CUDA when present.")
    # context
    max_segments: int = Field(default=80, ge=1, description="Most segments of a document read per example, from its start (LLoCO: 80).")
    max_answer_tokens: int = Field(default=512, ge=1, description="Longer answers are cut to this many tokens (EOS kept).")
    # checkpoints
    checkpoint_every: int = Field(default=50, ge=1, description="Optimizer steps between checkpoints committed to the store.")
    keep_checkpoints: int = Field(default=1, ge=1, description="Committed checkpoints kept (older ones are deleted after a newer commit).")

    @field_validator("output_key", "encoder_key")
    @classmethod
    def _key_is_a_name(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else check_name(value, str(info.field_name).replace("_", " "))

    def training_settings(self) -> dict:
        """The fields that change what is trained (part of the adapter key)."""
        return self.model_dump(mode="json", exclude=SETTINGS_EXCLUDED)
