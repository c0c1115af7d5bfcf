"""Flow `pipeline`: ingest -> (train-compressor ->) compress -> finetune -> evaluate for one corpus,
every stage cached.

Each stage is its own child flow run (named `<stage>-<corpus>` in the UI) with results persisted under
the store root, so a retry from the UI skips what the store already holds: ingest skips unchanged
documents, compress plans only uncommitted shards, finetune is a cache hit on a finished adapter key,
evaluate returns a finished report under the same eval key. GPU stages hold a `gpu` slot.

The optional first stage trains an AutoCompressor from a base LLaMA model on the corpus (and a QA
file); its checkpoint is then the model of every later stage.

With a QA file and no eval set, finetune holds out a deterministic share of the QA file's
documents (`finetune.holdout`) and evaluate scores the adapter on those held-out questions, so
training and evaluation never share a document. With an eval set, finetune trains on the whole
QA file and evaluate reads the eval set (a benchmark's contexts go into their own corpus).
"""

from __future__ import annotations

import time
from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from pydantic import BaseModel, Field

from lloco_core.config import IngestConfig, StoreConfig
from lloco_core.qa.config import EvaluateConfig
from lloco_core.training.compressor_config import CompressorConfig
from lloco_core.training.finetune import FinetuneConfig

from ._runtime import CORPUS_PATTERN, FORM, CompressOptions, ScaleOptions, configured, field_of, gpu_slot
from .compress import artifact_key, compress_flow
from .evaluate import evaluate_flow, system_rows
from .finetune import FinetuneFlowConfig, finetune_flow
from .ingest import ingest_flow
from .train_compressor import CompressorFlowConfig, train_compressor_flow


class PipelineStages(BaseModel):
    """Which stages run; a switched-off stage is skipped, later ones read what the store holds."""

    model_config = FORM

    ingest: bool = Field(default=True, description="Add the sources' new and changed documents.")
    train_compressor: bool = Field(default=False, description="First train an AutoCompressor from `model` (a base LLaMA model) on the corpus; later stages use the trained checkpoint.")
    compress: bool = Field(default=True, description="Encode uncompressed documents into committed shards.")
    finetune: bool = Field(default=True, description="Train (or reuse) the corpus LoRA adapter; needs finetune.qa.")
    evaluate: bool = Field(default=True, description="Compare LLoCO with the baselines; on evaluate.eval_set, else on the questions finetune held out.")


class FinetuneOptions(BaseModel):
    """The finetune settings a form shows (paper defaults); the rest keep FinetuneConfig's defaults."""

    model_config = FORM

    qa: str | None = Field(default=None, description="QA JSONL for this corpus (id, doc_id, question, answers); empty = no finetune.")
    holdout: float = field_of(FinetuneConfig, "holdout")
    epochs: int = field_of(FinetuneConfig, "epochs")
    max_steps: int | None = field_of(FinetuneConfig, "max_steps")
    learning_rate: float = field_of(FinetuneConfig, "learning_rate")
    lora_r: int = field_of(FinetuneConfig, "lora_r")
    lora_alpha: int = field_of(FinetuneConfig, "lora_alpha")
    micro_batch_size: int = field_of(FinetuneConfig, "micro_batch_size")
    gradient_accumulation_steps: int = field_of(FinetuneConfig, "gradient_accumulation_steps")
    zero_stage: Literal[0, 1, 2, 3] = field_of(FinetuneConfig, "zero_stage")
    checkpoint_every: int = field_of(FinetuneConfig, "checkpoint_every")
    seed: int = field_of(FinetuneConfig, "seed")
    device: Literal["auto", "cpu", "cuda"] = field_of(FinetuneConfig, "device")
    launcher: str | None = field_of(FinetuneFlowConfig, "launcher")


class TrainCompressorOptions(BaseModel):
    """The compressor-training settings a form shows (train_compressor stage); the rest keep CompressorConfig's defaults."""

    model_config = FORM

    qa: str | None = field_of(CompressorConfig, "qa")
    summary_length: int | None = field_of(CompressorConfig, "summary_length")
    segment_length: int | None = field_of(CompressorConfig, "segment_length")
    max_steps: int = field_of(CompressorConfig, "max_steps")
    learning_rate: float = field_of(CompressorConfig, "learning_rate")
    warmup_steps: int = field_of(CompressorConfig, "warmup_steps")
    lm_weight: float = field_of(CompressorConfig, "lm_weight")
    qa_weight: float = field_of(CompressorConfig, "qa_weight")
    qa_documents: int = field_of(CompressorConfig, "qa_documents")
    questions_per_document: int | None = field_of(CompressorConfig, "questions_per_document")
    gradient_segments: int = field_of(CompressorConfig, "gradient_segments")
    tuning: Literal["full", "lora"] = field_of(CompressorConfig, "tuning")
    zero_stage: Literal[0, 1, 2] = field_of(CompressorConfig, "zero_stage")
    checkpoint_every: int = field_of(CompressorConfig, "checkpoint_every")
    seed: int = field_of(CompressorConfig, "seed")
    device: Literal["auto", "cpu", "cuda"] = field_of(CompressorConfig, "device")
    out: str | None = field_of(CompressorConfig, "out")
    launcher: str | None = field_of(CompressorFlowConfig, "launcher")


class EvaluateOptions(BaseModel):
    """The evaluation settings a form shows; the adapter is the one the finetune stage produced."""

    model_config = FORM

    eval_set: str | None = Field(default=None, description="Eval JSONL (LongBench/QuALITY file or a corpus QA file); empty = the questions finetune held out of finetune.qa.")
    limit: int | None = field_of(EvaluateConfig, "limit")
    systems: list[Literal["no_context", "truncated", "retrieval", "lloco_base", "lloco"]] = field_of(EvaluateConfig, "systems")
    max_new_tokens: int = field_of(EvaluateConfig, "max_new_tokens")
    window: int | None = field_of(EvaluateConfig, "window")
    batch_size: int = field_of(EvaluateConfig, "batch_size")
    device: Literal["auto", "cpu", "cuda"] = field_of(EvaluateConfig, "device")
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = field_of(EvaluateConfig, "dtype")


class CorpusJob(StoreConfig):
    """One corpus: where its documents come from, which compressor encodes them, how shards run."""

    model_config = FORM

    corpus: str = Field(pattern=CORPUS_PATTERN, description="Corpus name: letters, digits, '.', '_' or '-' (one path segment).")
    sources: list[str] = Field(default_factory=list, description="Folders of .txt/.md, .jsonl or .parquet files, or fsspec URLs, ingested in order.")
    model: str = Field(description="AutoCompressor checkpoint: a local folder or a hub id already in the local cache.")
    compress: CompressOptions = Field(default_factory=CompressOptions)
    scale: ScaleOptions = Field(default_factory=ScaleOptions)


class PipelineConfig(CorpusJob):
    """The `pipeline` form: one corpus from sources to compressed shards (and on to an adapter and a report)."""

    model: str = Field(description="AutoCompressor checkpoint (local folder or cached hub id); with the train_compressor stage on, the base LLaMA model it is trained from.")
    stages: PipelineStages = Field(default_factory=PipelineStages)
    compressor: TrainCompressorOptions = Field(default_factory=TrainCompressorOptions)
    finetune: FinetuneOptions = Field(default_factory=FinetuneOptions)
    evaluate: EvaluateOptions = Field(default_factory=EvaluateOptions)


def _counts(stage: str, summary: dict[str, Any]) -> dict[str, Any]:
    keys = {
        "ingest": ("documents_added", "documents_updated", "documents_unchanged"),
        "train_compressor": ("compressor_key", "steps", "first_loss", "last_loss", "reused", "checkpoint"),
        "compress": ("documents_compressed", "documents_skipped", "shards_committed", "segments_written", "tokens_per_s"),
        "finetune": ("adapter_key", "steps", "first_loss", "last_loss", "tokens_per_s"),
        "evaluate": ("eval_key", "eval_set", "eval_corpus", "examples", "documents", "cached", "out"),
    }[stage]
    row = {"stage": stage} | {k: summary.get(k) for k in keys}
    if stage == "finetune":
        split = summary.get("split") or {}
        row |= {"train_questions": split.get("train_questions"), "heldout_questions": split.get("heldout_questions")}
    if stage == "evaluate":
        row["skipped"] = len(summary.get("skipped") or [])
    return row


@flow(name="pipeline", flow_run_name="pipeline-{config.corpus}")
def pipeline_flow(config: PipelineConfig) -> dict[str, Any]:
    logger = get_run_logger()
    started = time.perf_counter()
    result: dict[str, Any] = {"corpus": config.corpus, "ingest": [], "train_compressor": None, "compress": None, "finetune": None, "evaluate": None}
    rows = []
    if config.stages.ingest:
        for source in config.sources:
            summary = configured(ingest_flow, config)(IngestConfig(root=config.root, endpoint_url=config.endpoint_url, corpus=config.corpus, source=source))
            result["ingest"].append(summary)
            rows.append(_counts("ingest", summary) | {"source": source})
    model = config.model
    if config.stages.train_compressor:
        options = config.compressor.model_dump(exclude={"launcher"})
        with gpu_slot(config.compressor.device):
            summary = configured(train_compressor_flow, config)(
                CompressorFlowConfig(root=config.root, endpoint_url=config.endpoint_url, corpus=config.corpus, base=config.model, launcher=config.compressor.launcher, **options)
            )
        result["train_compressor"] = summary
        rows.append(_counts("train_compressor", summary))
        model = summary["checkpoint"]
    if config.stages.compress:
        with gpu_slot(config.compress.device):
            summary = configured(compress_flow, config, config.scale)(config.compress.config(config, config.corpus, model))
        result["compress"] = summary
        rows.append(_counts("compress", summary))
    qa = config.finetune.qa
    if config.stages.finetune and not qa:
        logger.warning("finetune skipped: no QA file (finetune.qa) in the parameters")
    elif config.stages.finetune:
        options = config.finetune.model_dump(exclude={"qa"})
        if config.evaluate.eval_set:  # evaluation has its own questions: train on the whole QA file
            options["holdout"] = 0.0
        with gpu_slot(config.finetune.device):
            summary = configured(finetune_flow, config)(FinetuneFlowConfig(root=config.root, endpoint_url=config.endpoint_url, corpus=config.corpus, model=model, qa=qa, **options))
        result["finetune"] = summary
        rows.append(_counts("finetune", summary))
    eval_set = config.evaluate.eval_set
    if config.stages.evaluate and not (eval_set or qa):
        logger.warning("evaluate skipped: no eval set (evaluate.eval_set, or finetune.qa to hold questions out of) in the parameters")
    elif config.stages.evaluate:
        adapter_key = (result["finetune"] or {}).get("adapter_key")
        options = config.evaluate.model_dump(exclude={"eval_set"})
        with gpu_slot(config.evaluate.device):
            summary = configured(evaluate_flow, config)(EvaluateConfig(root=config.root, endpoint_url=config.endpoint_url, corpus=config.corpus, model=model, adapter_key=adapter_key, eval_set=eval_set, **options))
        result["evaluate"] = summary
        rows.append(_counts("evaluate", summary) | {"scores": {r["system"]: r["score"] for r in system_rows(summary)}})
    result["seconds"] = round(time.perf_counter() - started, 3)
    logger.info("pipeline %s done in %.1f s: %s (each stage's counts in the table artifact)", config.corpus, result["seconds"], ", ".join(r["stage"] for r in rows))
    create_table_artifact(key=artifact_key("pipeline", config.corpus), table=rows, description=f"Stages of the pipeline run for {config.corpus}")
    return result
