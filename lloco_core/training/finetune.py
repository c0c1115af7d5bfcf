"""Finetune one LoRA adapter per corpus on its compressed contexts, through DeepSpeed.

    finetune(FinetuneConfig(...)) -> dict          # Python API
    python -m lloco_core.training.finetune --corpus C --qa FILE --model PATH [--root URL] …   # one process
    deepspeed --num_gpus 4 -m lloco_core.training.finetune --corpus C --qa FILE --model PATH …   # multi-GPU
    torchrun --nproc_per_node 4 -m lloco_core.training.finetune …                               # same, torchrun

Order of work, so that bad input never leaves anything in the store: load and validate the QA
file, find the committed embeddings of every doc_id, check the model's hidden size against them,
split the questions by document (`holdout`: a deterministic share of the documents is kept out of
training, so `lloco evaluate` scores documents the adapter never saw), compute the adapter key
(base weights hash, QA bytes hash, encoder key, document versions, training settings, prompt
templates). A finished adapter under that key is returned as is; otherwise training resumes from
the newest committed checkpoint, if any. The adapter, prompts, held-out questions
(`heldout.jsonl`), loss curve and summary are written, then committed last.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lloco_core.errors import InputError
from lloco_core.fingerprint import checkpoint_fingerprint, stable_hash
from lloco_core.model.autocompressor import load_autocompressor, load_config, load_tokenizer, resolve_device
from lloco_core.model.compress import resolve_model_folder
from lloco_core.model.decoder import build_decoder_inputs, pad_batch
from lloco_core.qa.dataset import HELDOUT_FILE, QAData, QAItem, check_documents, item_record, load_qa, split_by_document
from lloco_core.qa.prompts import PromptSet, prompt_set
from lloco_core.store.embeddings import EmbeddingStore, pick_encoder
from lloco_core.store.storage import Store, storage_options_for
from lloco_core.training import engine as ds
from lloco_core.training.checkpoints import AdapterStore, step_tag
from lloco_core.training.config import FinetuneConfig
from lloco_core.training.examples import Example, build_examples, example_summaries, label_vector

ADAPTER_FORMAT = 2
ProgressFn = Callable[[dict[str, Any]], None]

__all__ = ["FinetuneConfig", "finetune", "plan_finetune", "FinetunePlan", "main"]


@dataclass
class FinetunePlan:
    """Everything validated and keyed before any training or writing."""

    config: FinetuneConfig
    store: Store
    qa: QAData
    encoder_key: str
    index: dict[str, tuple[str, str]]
    model_folder: str
    summary_length: int
    hidden_size: int
    prompts: PromptSet
    train_items: list[QAItem]
    heldout_items: list[QAItem]
    adapter_key: str
    bf16: bool
    use_cuda: bool

    @property
    def adapters(self) -> AdapterStore:
        return AdapterStore(self.store, self.config.corpus, self.adapter_key)

    def split_summary(self) -> dict[str, Any]:
        """What was trained on and what was held out, by documents and questions."""
        return {
            "holdout": self.config.holdout,
            "train_documents": len({i.doc_id for i in self.train_items}),
            "train_questions": len(self.train_items),
            "heldout_documents": sorted({i.doc_id for i in self.heldout_items}),
            "heldout_questions": len(self.heldout_items),
            "heldout": f"{self.adapters.uri}/{HELDOUT_FILE}" if self.heldout_items else None,
        }


def plan_finetune(config: FinetuneConfig, prompts: PromptSet | None = None) -> FinetunePlan:
    """Validate inputs and compute the adapter key; reads only, never writes."""
    store = Store.from_config(config)
    qa = load_qa(config.qa, storage_options_for(config.qa, config.endpoint_url))
    encoder_key = pick_encoder(store, config.corpus, config.encoder_key)
    embeddings = EmbeddingStore(store, config.corpus, encoder_key)
    index = embeddings.current_index()
    check_documents(qa, index, config.corpus, encoder_key)
    folder = resolve_model_folder(config.model, None)
    model_config = load_config(folder)
    meta = embeddings.read_shard(next(iter(index.values()))[1]).schema.metadata
    stored_hidden, summary_length = int(meta[b"hidden_size"]), int(meta[b"summary_length"])
    if stored_hidden != int(model_config.hidden_size):
        raise InputError(
            f"hidden size mismatch: model {config.model!r} has hidden_size {model_config.hidden_size}, but the embeddings "
            f"in {embeddings.uri} have hidden_size {stored_hidden}; finetune with the base model that compressed the corpus"
        )
    use_cuda = resolve_device(config.device).type == "cuda"
    bf16 = use_cuda if config.bf16 is None else config.bf16
    prompts = prompts or prompt_set(config.prompt_set)
    train_items, heldout_items = split_by_document(qa.items, config.holdout, config.seed)
    documents = sorted({(item.doc_id, index[item.doc_id][0]) for item in qa.items})
    key = config.output_key or "lora-" + stable_hash(
        {
            "format": ADAPTER_FORMAT,
            "base": checkpoint_fingerprint(folder),
            "qa": qa.sha256,
            "encoder": encoder_key,
            "documents": documents,
            "settings": config.training_settings(),
            "bf16": bf16,
            "prompts": json.loads(prompts.to_json()),
            "world_size": int(__import__("os").environ.get("WORLD_SIZE", "1")),
        }
    )
    return FinetunePlan(config, store, qa, encoder_key, index, folder, summary_length, stored_hidden, prompts, train_items, heldout_items, key, bf16, use_cuda)


def epoch_order(n: int, epoch: int, seed: int, multiple: int) -> list[int]:
    """A seeded permutation per epoch, wrapped to a multiple of the global batch (every rank gets full batches)."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000 + epoch)).tolist()
    while len(order) % multiple:
        order.append(order[len(order) % n])
    return order


def make_scheduler(optimizer: torch.optim.Optimizer, kind: str, warmup: int, total: int) -> torch.optim.lr_scheduler.LRScheduler:
    from transformers import get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup

    if kind == "cosine":
        return get_cosine_schedule_with_warmup(optimizer, warmup, total)
    if kind == "linear":
        return get_linear_schedule_with_warmup(optimizer, warmup, total)
    return get_constant_schedule_with_warmup(optimizer, warmup)


def build_model(plan: FinetunePlan) -> torch.nn.Module:
    """Base weights in float32 (DeepSpeed casts for bf16 and keeps fp32 masters) + fresh LoRA."""
    from peft import LoraConfig, get_peft_model

    config = plan.config
    attn = "sdpa"
    base = load_autocompressor(plan.model_folder, dtype=torch.float32, attn_implementation=attn)
    if config.gradient_checkpointing if config.gradient_checkpointing is not None else plan.use_cuda:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    base.config.use_cache = False
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout, target_modules=list(config.target_modules), bias="none", task_type="CAUSAL_LM")
    torch.manual_seed(config.seed)
    return get_peft_model(base, lora)


def _batch(engine_module: torch.nn.Module, examples: list[Example], documents: dict, device: torch.device) -> tuple[Any, int]:
    embeds, labels = [], []
    for ex in examples:
        summaries = example_summaries(ex, documents)
        e = build_decoder_inputs(engine_module, summaries, [*ex.prompt_ids, *ex.answer_ids])
        embeds.append(e)
        labels.append(label_vector(summaries.shape[0] * summaries.shape[1], len(ex.prompt_ids), ex.answer_ids))
    batch = pad_batch(embeds, labels, padding_side="right")
    return batch, int(batch.attention_mask.sum())


def _adapter_files(module: torch.nn.Module) -> dict[str, bytes]:
    with tempfile.TemporaryDirectory(prefix="lloco-adapter-") as tmp:
        module.save_pretrained(tmp, safe_serialization=True)
        return {name: (Path(tmp) / name).read_bytes() for name in ("adapter_config.json", "adapter_model.safetensors")}


def train(plan: FinetunePlan, on_progress: ProgressFn | None = None) -> dict[str, Any]:
    """The DeepSpeed training loop with store checkpoints; returns the run summary (rank 0's)."""
    config = plan.config
    env = ds.prepare_environment(plan.use_cuda)
    ds.init_distributed(env, plan.use_cuda)
    import torch.distributed as dist

    tokenizer = load_tokenizer(plan.model_folder)
    embeddings = EmbeddingStore(plan.store, config.corpus, plan.encoder_key)
    examples, documents = build_examples(plan.train_items, embeddings, plan.index, tokenizer, plan.prompts, config.max_answer_tokens, config.max_segments)
    for doc in documents.values():
        if doc.summaries.numel():
            check_hidden_size_of(plan, doc.summaries.shape[-1], embeddings.uri)

    global_batch = config.micro_batch_size * env.world_size
    micro_per_epoch = math.ceil(len(examples) / global_batch)
    total_micro = micro_per_epoch * config.epochs
    total_steps = math.ceil(total_micro / config.gradient_accumulation_steps)
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)
        total_micro = min(total_micro, total_steps * config.gradient_accumulation_steps)
    warmup = math.ceil(config.warmup_ratio * total_steps)

    model = build_model(plan)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = make_scheduler(optimizer, config.lr_scheduler, warmup, total_steps)
    engine = ds.initialize(model, optimizer, scheduler, ds.deepspeed_config(config.micro_batch_size, config.gradient_accumulation_steps, env.world_size, config.zero_stage, plan.bf16, config.max_grad_norm))
    device = engine.device

    adapters = plan.adapters
    curve: list[dict[str, float]] = []
    micro, resumed_from = 0, 0
    staging = tempfile.TemporaryDirectory(prefix=f"lloco-ckpt-r{env.rank}-")
    resumed = ds.resume_from_store(engine, adapters.checkpoints, staging.name)
    for refused in resumed.refused:
        if on_progress and env.is_main:
            on_progress({"event": "checkpoint_refused", **refused})
    if resumed.client_state is not None:
        client = resumed.client_state
        micro, curve, resumed_from = client["micro_step"], client["curve"], client["step"]
        ds.set_rng_state(client["rng"])
    else:
        torch.manual_seed(config.seed + 7919 * env.rank)

    engine.train()
    step = resumed_from
    tokens = examples_seen = 0
    window_loss: list[float] = []
    started = time.perf_counter()
    order_epoch, order = -1, []
    while micro < total_micro:
        epoch, position = divmod(micro, micro_per_epoch)
        if epoch != order_epoch:
            order, order_epoch = epoch_order(len(examples), epoch, config.seed, global_batch), epoch
        chunk = order[position * global_batch : (position + 1) * global_batch]
        mine = [examples[i] for i in chunk[env.rank :: env.world_size]]
        batch, n_tokens = _batch(engine.module, mine, documents, device)
        out = engine(inputs_embeds=batch.inputs_embeds, attention_mask=batch.attention_mask.to(device), position_ids=batch.position_ids.to(device), labels=batch.labels.to(device))
        engine.backward(out.loss)
        boundary = engine.is_gradient_accumulation_boundary()
        engine.step()
        micro += 1
        tokens += n_tokens
        examples_seen += len(mine)
        window_loss.append(float(out.loss.detach().float()))
        if not boundary:
            continue
        step += 1
        loss = torch.tensor(sum(window_loss) / len(window_loss))
        if env.world_size > 1:
            dist.all_reduce(loss)
            loss /= env.world_size
        window_loss = []
        curve.append({"step": step, "loss": round(float(loss), 6), "lr": float(scheduler.get_last_lr()[0]), "epoch": epoch})
        if on_progress and env.is_main:
            on_progress({"event": "step", "step": step, "total_steps": total_steps, "loss": curve[-1]["loss"]})
        if step % config.checkpoint_every == 0 and micro < total_micro:
            _checkpoint(engine, adapters, env, staging.name, step, micro, curve, config.keep_checkpoints)
            if on_progress and env.is_main:
                on_progress({"event": "checkpoint", "step": step, "uri": adapters.uri + "/checkpoints/" + step_tag(step)})
    seconds = time.perf_counter() - started

    summary = {
        "corpus": config.corpus,
        "adapter_key": plan.adapter_key,
        "adapter_uri": adapters.uri,
        "encoder_key": plan.encoder_key,
        "reused": False,
        "steps": step,
        "steps_run": step - resumed_from,
        "resumed_from_step": resumed_from,
        "checkpoints_refused": resumed.refused,
        "examples": len(examples),
        "prompt_set": plan.prompts.name,
        "split": plan.split_summary(),
        "epochs": config.epochs,
        "first_loss": curve[0]["loss"] if curve else None,
        "last_loss": curve[-1]["loss"] if curve else None,
        "seconds": round(seconds, 3),
        "tokens_per_s": round(tokens * env.world_size / seconds, 1) if seconds else 0.0,
        "examples_per_s": round(examples_seen * env.world_size / seconds, 3) if seconds else 0.0,
        "world_size": env.world_size,
        "zero_stage": config.zero_stage,
        "bf16": plan.bf16,
    }

    def files() -> dict[str, bytes]:
        heldout = "".join(json.dumps(item_record(i), sort_keys=True) + "\n" for i in plan.heldout_items)
        return {**_adapter_files(engine.module), "prompts.json": plan.prompts.to_json().encode(), **({HELDOUT_FILE: heldout.encode()} if heldout else {})}

    ds.publish_run(adapters, env, staging, files, curve, f"{config.corpus} / {plan.adapter_key}", summary)
    return summary


def check_hidden_size_of(plan: FinetunePlan, hidden: int, where: str) -> None:
    if hidden != plan.hidden_size:
        raise InputError(f"embeddings in {where} have hidden size {hidden}, but their shard metadata says {plan.hidden_size}")


def _checkpoint(engine: Any, adapters: AdapterStore, env: ds.DistEnv, staging: str, step: int, micro: int, curve: list, keep: int) -> None:
    """Trainable weights, optimizer partitions, scheduler and this loop's state (step, data position, loss curve, RNG) to the store."""
    client = {"step": step, "micro_step": micro, "curve": curve, "rng": ds.rng_state()}
    ds.save_to_store(engine, adapters.checkpoints, env, staging, step, client, {"micro_step": micro}, keep)


def finetune(config: FinetuneConfig, prompts: PromptSet | None = None, on_progress: ProgressFn | None = None) -> dict[str, Any]:
    """Validate, key, reuse a finished adapter or train (resuming from the newest checkpoint)."""
    plan = plan_finetune(config, prompts)
    done = plan.adapters.finished()
    if done is not None:
        return {**done, "reused": True, "steps_run": 0}
    return train(plan, on_progress)


def config_from_args(argv: list[str] | None = None) -> FinetuneConfig:
    """Every FinetuneConfig field as a --flag (the launcher path has no other CLI)."""
    parser = argparse.ArgumentParser(prog="python -m lloco_core.training.finetune", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)  # deepspeed launcher
    parser.add_argument("--config-json", dest="config_json", default=None, help="the whole FinetuneConfig as JSON (other flags override it)")
    for name, field in FinetuneConfig.model_fields.items():
        parser.add_argument("--" + name.replace("_", "-"), dest=name, default=None, help=field.description)
    args = {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None and k != "local_rank"}
    base = json.loads(args.pop("config_json")) if "config_json" in args else {}
    if "target_modules" in args:
        args["target_modules"] = [m.strip() for m in args["target_modules"].split(",") if m.strip()]
    if "zero_stage" in args:
        args["zero_stage"] = int(args["zero_stage"])
    return FinetuneConfig(**{**base, **args})


def main(argv: list[str] | None = None) -> int:
    """Exit 2 on bad input, EX_TEMPFAIL (75) on a storage or network error worth retrying."""
    from lloco_core.training.child import run_child

    return run_child("finetune", lambda on_progress: finetune(config_from_args(argv), on_progress=on_progress))


if __name__ == "__main__":
    sys.exit(main())
