"""Train an AutoCompressor from a base LLaMA-architecture causal LM, through DeepSpeed.

    train_compressor(CompressorConfig(...)) -> dict     # Python API
    lloco train-compressor --base PATH_OR_ID --corpus C --out FOLDER [--qa FILE] …

The output is a checkpoint in the published AutoCompressor format (root-level
`embed_summary.weight`; `summary_length`, `accumulate_summary`, `segment_length(s)` in config.json,
tokenizer beside it) that `lloco compress`, finetune and evaluate load like any other.

Order of work, so that bad input never leaves anything in the store: read the corpus's document
commits, load and check the QA file, resolve the base model and its config, compute the compressor
key (base weights hash, document versions, QA bytes hash, settings, prompt templates). A finished
compressor under that key is returned as is; otherwise training resumes from the newest committed
checkpoint, if any. The checkpoint, prompts, loss curve and summary are written, then committed last.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, LlamaConfig

from lloco_core.errors import InputError
from lloco_core.fingerprint import checkpoint_fingerprint, stable_hash
from lloco_core.model.autocompressor import (
    SUMMARY_TOKENS, LlamaAutoCompressorModel, check_checkpoint, check_model_config, load_autocompressor, load_tokenizer, model_segment_length, resolve_device,
)  # fmt: skip
from lloco_core.model.checkpoint import one_line, resolve_model_folder
from lloco_core.qa.dataset import QAData, load_qa
from lloco_core.qa.prompts import PromptSet, default_prompts
from lloco_core.store.documents import DocumentRef, DocumentTable
from lloco_core.store.storage import Store
from lloco_core.training import engine as ds
from lloco_core.training.checkpoints import CompressorStore, read_checked
from lloco_core.training.compressor_config import CompressorConfig

COMPRESSOR_FORMAT = 1
PUBLISHED_SUMMARY_LENGTH = 50
ProgressFn = Callable[[dict[str, Any]], None]

__all__ = ["CompressorConfig", "train_compressor", "plan_compressor", "CompressorPlan"]


@dataclass
class CompressorPlan:
    """Everything validated and keyed before any training or writing."""

    config: CompressorConfig
    store: Store
    documents: list[DocumentRef]
    qa: QAData | None
    base_folder: str
    base_config: LlamaConfig
    summary_length: int
    segment_length: int
    prompts: PromptSet
    key: str
    bf16: bool
    use_cuda: bool

    @property
    def run(self) -> CompressorStore:
        return CompressorStore(self.store, self.config.corpus, self.key)

    @property
    def base_is_autocompressor(self) -> bool:
        return hasattr(self.base_config, "summary_length")

    @property
    def new_tensors(self) -> frozenset[str]:
        """What training creates: the summary tokens of a plain base model."""
        return frozenset() if self.base_is_autocompressor else frozenset({SUMMARY_TOKENS})

    def model_config(self) -> LlamaConfig:
        """The base config with the AutoCompressor fields of the checkpoint to be written."""
        config = copy.deepcopy(self.base_config)
        config.summary_length = self.summary_length
        config.accumulate_summary = self.config.accumulate_summary
        config.segment_length = self.segment_length
        config.segment_lengths = [self.segment_length]
        config.architectures = ["LlamaAutoCompressorModel"]
        return config


def _check_qa_documents(qa: QAData, documents: dict[str, DocumentRef], corpus: str) -> None:
    for item in qa.items:
        if item.doc_id not in documents:
            raise InputError(f"{item.source}:{item.line}: doc_id {item.doc_id!r} is not a document of corpus {corpus!r} (ingest it first, or fix the doc_id)")


def _base_config(folder: str, base: str, summary_length: int | None) -> LlamaConfig:
    """The base's config.json, validated as an AutoCompressor's would be (a LLaMA, sane sizes)."""
    path = Path(folder) / "config.json"
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read the config.json of base model {base!r}: {one_line(err)}") from err
    if not isinstance(values, dict):
        raise InputError(f"{path} is not a JSON object")
    check_model_config({"summary_length": summary_length or PUBLISHED_SUMMARY_LENGTH, **values}, base)
    try:
        return AutoConfig.from_pretrained(folder)
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise InputError(f"cannot load the config of base model {base!r}: {one_line(err)}") from err


def plan_compressor(config: CompressorConfig, prompts: PromptSet | None = None) -> CompressorPlan:
    """Validate inputs and compute the compressor key; reads only, never writes."""
    store = Store.from_config(config)
    current = DocumentTable(store, config.corpus).current()
    if not current:
        raise InputError(f"corpus {config.corpus!r} has no documents in {store.uri(store.path(config.corpus))}: run `lloco ingest` first")
    qa = load_qa(config.qa, store.options if config.qa.startswith("s3://") else None) if config.qa and config.qa_weight > 0 else None
    if qa is not None:
        _check_qa_documents(qa, current, config.corpus)
    folder = resolve_model_folder(config.base, config.revision)
    base_config = _base_config(folder, config.base, config.summary_length)
    own = getattr(base_config, "summary_length", None)
    summary_length = config.summary_length or own or PUBLISHED_SUMMARY_LENGTH
    if own is not None and int(own) != summary_length:
        raise InputError(f"base model {config.base!r} is an AutoCompressor with summary_length {own}; --summary-length {summary_length} would discard its summary tokens (train from its plain LLaMA base instead)")
    segment_length = config.segment_length or model_segment_length(base_config)
    widest = config.lm_segments * summary_length + config.gradient_segments * segment_length + summary_length
    if config.lm_weight > 0 and widest > base_config.max_position_embeddings:
        raise InputError(
            f"an AutoCompressor-objective segment can need {widest} positions (softprompt + segment + summary tokens), more than the base model's "
            f"max_position_embeddings {base_config.max_position_embeddings}: lower --segment-length, --summary-length or lm_substeps"
        )
    use_cuda = resolve_device(config.device).type == "cuda"
    bf16 = use_cuda if config.bf16 is None else config.bf16
    prompts = prompts or default_prompts()
    plan = CompressorPlan(config, store, [], qa, folder, base_config, summary_length, segment_length, prompts, "", bf16, use_cuda)
    check_checkpoint(folder, plan.model_config(), plan.new_tensors)  # an incomplete base stops here, before any work
    used = current.values() if config.lm_weight > 0 else [current[d] for d in sorted(qa.doc_ids)] if qa else []
    documents = sorted(used, key=lambda r: r.doc_id)
    key = config.output_key or "compressor-" + stable_hash(
        {
            "format": COMPRESSOR_FORMAT,
            "base": checkpoint_fingerprint(folder),
            "documents": [(r.doc_id, r.sha256) for r in documents],
            "qa": qa.sha256 if qa else None,
            "settings": config.training_settings(),
            "summary_length": summary_length,
            "segment_length": segment_length,
            "bf16": bf16,
            "prompts": json.loads(prompts.to_json()) if qa else None,
            "world_size": int(os.environ.get("WORLD_SIZE", "1")),
        }
    )
    plan.documents, plan.key = documents, key
    return plan


def build_model(plan: CompressorPlan) -> torch.nn.Module:
    """The base weights as an AutoCompressor in float32 (DeepSpeed casts for bf16), new summary
    tokens initialised to the EOS embedding (as the AutoCompressor code does), LoRA if asked."""
    config = plan.config
    model_config = plan.model_config()
    torch.manual_seed(config.seed)
    if plan.base_is_autocompressor:
        model = load_autocompressor(plan.base_folder, dtype=torch.float32)
        for name in ("accumulate_summary", "segment_length", "segment_lengths"):
            setattr(model.config, name, getattr(model_config, name))
    else:
        model = load_autocompressor(plan.base_folder, dtype=torch.float32, base_config=model_config)
        with torch.no_grad():
            eos = model_config.eos_token_id if isinstance(model_config.eos_token_id, int) else model_config.eos_token_id[0]
            model.embed_summary.weight.copy_(model.get_input_embeddings().weight[eos].expand_as(model.embed_summary.weight))
    if config.gradient_checkpointing if config.gradient_checkpointing is not None else plan.use_cuda:
        model.activation_checkpointing_enable({"use_reentrant": False})
    model.config.use_cache = False
    if config.tuning == "full":
        return model
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout, target_modules=list(config.target_modules),
        modules_to_save=["embed_summary"], bias="none",
    )
    return get_peft_model(model, lora)


def publishable_model(module: torch.nn.Module) -> LlamaAutoCompressorModel:
    """The trained AutoCompressor with LoRA merged into its weights (the published format has no adapter)."""
    model = module.merge_and_unload() if hasattr(module, "merge_and_unload") else module
    model.config.use_cache = True
    return model


def checkpoint_files(model: LlamaAutoCompressorModel, tokenizer: Any) -> dict[str, bytes]:
    """config.json, model.safetensors and tokenizer files, as save_pretrained writes them."""
    with tempfile.TemporaryDirectory(prefix="lloco-compressor-") as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        return {p.name: p.read_bytes() for p in sorted(Path(tmp).iterdir()) if p.is_file()}


def cache_folder(key: str) -> Path:
    return Path(os.environ.get("LLOCO_CACHE_DIR", Path.home() / ".cache" / "lloco")) / "compressors" / key


def materialized_folder(run: CompressorStore, out: str | None) -> str:
    """Where the finished checkpoint is read from locally: `out`, the store's own folder for a local
    root, or a local cache folder for a remote one."""
    if out:
        return os.path.abspath(os.path.expanduser(out))
    if run.store.is_local:
        return f"{run.prefix}/{run.checkpoint_folder}"
    return str(cache_folder(run.key))


def materialize(run: CompressorStore, out: str | None) -> str:
    """Make `materialized_folder` hold the finished checkpoint (each file written atomically); return it."""
    remote = f"{run.prefix}/{run.checkpoint_folder}"
    target = materialized_folder(run, out)
    if target == remote:
        return target
    folder = Path(target)
    record = run.record()
    sums = record.sums() if record is not None else {}
    inside = f"{run.checkpoint_folder}/"
    folder.mkdir(parents=True, exist_ok=True)
    for name, expected in sorted(sums.items()):  # only the files the commit record names, each checked by its bytes
        if name.startswith(inside):
            tmp = folder / f".tmp-{name.removeprefix(inside)}"
            tmp.write_bytes(read_checked(run.store, f"{run.prefix}/{name}", expected))
            tmp.replace(folder / name.removeprefix(inside))
    return target


def train(plan: CompressorPlan, on_progress: ProgressFn | None = None) -> dict[str, Any]:
    """The DeepSpeed training loop with store checkpoints; returns the run summary (rank 0's)."""
    from lloco_core.training.compressor_data import LMData, qa_batch, qa_documents, token_stream
    from lloco_core.training.compressor_objective import CompressorObjective
    from lloco_core.training.finetune import make_scheduler

    config = plan.config
    env = ds.prepare_environment(plan.use_cuda)
    ds.init_distributed(env, plan.use_cuda)
    tokenizer = load_tokenizer(plan.base_folder)
    texts = DocumentTable(plan.store, config.corpus).read_texts(plan.documents)
    lm_data = None
    if config.lm_weight > 0:
        try:
            lm_data = LMData.build(token_stream(tokenizer, [texts[r.doc_id] for r in plan.documents]), config, plan.segment_length)
        except ValueError as err:
            raise InputError(f"corpus {config.corpus!r}: {err}; lower --segment-length or set lm_weight 0") from err
    qa_docs = qa_documents(plan.qa.items, texts, tokenizer, plan.prompts, config, plan.segment_length) if plan.qa else []

    model = build_model(plan)
    objective = CompressorObjective(model, config.accumulate_summary, config.gradient_segments, config.lm_weight, config.qa_weight)
    trainable = [p for p in objective.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, betas=(0.9, config.adam_beta2), weight_decay=config.weight_decay)
    scheduler = make_scheduler(optimizer, config.lr_scheduler, config.warmup_steps, config.max_steps)
    engine = ds.initialize(objective, optimizer, scheduler, ds.deepspeed_config(1, 1, env.world_size, config.zero_stage, plan.bf16, config.max_grad_norm))

    run = plan.run
    staging = tempfile.TemporaryDirectory(prefix=f"lloco-compressor-r{env.rank}-")
    resumed = ds.resume_from_store(engine, run.checkpoints, staging.name)
    for refused in resumed.refused:
        if on_progress and env.is_main:
            on_progress({"event": "checkpoint_refused", **refused})
    client = resumed.client_state
    curve: list[dict[str, Any]] = client["curve"] if client else []
    resumed_from = client["step"] if client else 0
    if client is None:
        torch.manual_seed(config.seed + 7919 * env.rank)
    else:
        ds.set_rng_state(client["rng"])

    engine.train()
    tokens = positions = 0
    started = time.perf_counter()
    for step in range(resumed_from + 1, config.max_steps + 1):
        qa = qa_batch(qa_docs, step, config, env.rank, env.world_size) if qa_docs else None
        lm = lm_data.batch(step, env.rank, env.world_size) if lm_data is not None else None
        losses = engine(qa=qa, lm=lm)
        engine.backward(losses.total)
        engine.step()
        tokens += losses.tokens
        positions += losses.positions
        point = {"step": step, "loss": _mean(losses.total, env), "lr": float(scheduler.get_last_lr()[0])}
        for name in ("qa", "lm"):
            value = getattr(losses, name)
            if value is not None:
                point[f"{name}_loss"] = _mean(value, env)
        curve.append(point)
        if on_progress and env.is_main:
            on_progress({"event": "step", "step": step, "total_steps": config.max_steps, "loss": point["loss"]})
        if step % config.checkpoint_every == 0 and step < config.max_steps:
            ds.save_to_store(engine, run.checkpoints, env, staging.name, step, {"step": step, "curve": curve, "rng": ds.rng_state()}, {}, config.keep_checkpoints)
            if on_progress and env.is_main:
                on_progress({"event": "checkpoint", "step": step, "uri": run.store.uri(run.checkpoints.folder(step))})
    seconds = time.perf_counter() - started

    steps_run = config.max_steps - resumed_from
    summary = {
        "corpus": config.corpus,
        "compressor_key": plan.key,
        "uri": run.uri,
        "base": config.base,
        "base_weights": checkpoint_fingerprint(plan.base_folder),
        "reused": False,
        "steps": config.max_steps,
        "steps_run": steps_run,
        "resumed_from_step": resumed_from,
        "first_loss": curve[0]["loss"] if curve else None,
        "last_loss": curve[-1]["loss"] if curve else None,
        "objectives": {"lm": config.lm_weight if lm_data is not None else 0.0, "qa": config.qa_weight if qa_docs else 0.0},
        "summary_length": plan.summary_length,
        "segment_length": plan.segment_length,
        "documents": len(plan.documents),
        "qa_documents": len(qa_docs),
        "seconds": round(seconds, 3),
        "tokens_per_s": round(tokens * env.world_size / seconds, 1) if seconds else 0.0,
        "positions_per_s": round(positions * env.world_size / seconds, 1) if seconds else 0.0,
        "world_size": env.world_size,
        "zero_stage": config.zero_stage,
        "bf16": plan.bf16,
        "tuning": config.tuning,
    }
    ds.publish_run(run, env, staging, lambda: {
        **{f"{run.checkpoint_folder}/{name}": data for name, data in checkpoint_files(publishable_model(engine.module.model), tokenizer).items()},
        "prompts.json": plan.prompts.to_json().encode(),
    }, curve, f"{config.corpus} / {plan.key}", summary)  # fmt: skip
    return summary


def _mean(value: torch.Tensor, env: ds.DistEnv) -> float:
    """The loss averaged over ranks (what the curve records)."""
    value = value.detach().float().clone()
    if env.world_size > 1:
        import torch.distributed as dist

        dist.all_reduce(value)
        value /= env.world_size
    return round(float(value), 6)


def train_compressor(config: CompressorConfig, prompts: PromptSet | None = None, on_progress: ProgressFn | None = None) -> dict[str, Any]:
    """Validate, key, reuse a finished compressor or train one (resuming from the newest checkpoint).
    The result names `checkpoint`: a local folder usable as `--model`."""
    plan = plan_compressor(config, prompts)
    done = plan.run.finished()
    summary = {**done, "reused": True, "steps_run": 0} if done is not None else train(plan, on_progress)
    if os.environ.get("RANK", "0") != "0":
        return summary
    return {**summary, "checkpoint": materialize(plan.run, config.out)}


def main(argv: list[str] | None = None) -> int:
    """`python -m lloco_core.training.compressor --config-json JSON` (the Prefect task's subprocess,
    and the entry point for `deepspeed --num_gpus N -m lloco_core.training.compressor …`)."""
    import argparse

    from lloco_core.training.child import run_child

    parser = argparse.ArgumentParser(prog="python -m lloco_core.training.compressor", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)  # deepspeed launcher
    parser.add_argument("--config-json", dest="config_json", required=True, help="the whole CompressorConfig as JSON")
    args = parser.parse_args(argv)

    return run_child("train-compressor", lambda on_progress: train_compressor(CompressorConfig.model_validate_json(args.config_json), on_progress=on_progress))


if __name__ == "__main__":
    raise SystemExit(main())
