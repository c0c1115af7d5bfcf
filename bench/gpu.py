"""The GPU benchmark (run by bench/gpu.sh on a lent GPU; not part of CI): one table.

A LLaMA-2-7B-shaped AutoCompressor (hidden 4096, 32 layers, 32 heads, MLP 11008, vocab 32000,
50 summary vectors per 1536-token segment) with random weights, built on the device in bf16
(nothing is downloaded). Measured:
- compression tokens/s and model-FLOPs utilisation (MFU) through lloco's own batching
  (`plan_batches` with GPU_BATCH_POSITIONS, then `summarize_documents`, as `compress_shard` runs
  them), at up to 1/4/16/64 documents per pass, short (~200 tokens) and long (~6k tokens)
  documents, with sdpa and with flash-attention-2 when it is installed; the ratio is against one
  document per pass (GPU goal: >= 3x on short documents; >= 50% MFU);
- answer latency at 32k tokens of context, full context vs LLoCO (prefill + 32 greedy tokens,
  interleaved repeats; goal >= 7.6x);
- finetune steps/s at 7B shape with LoRA (r 8, q/k/v/o), gradient checkpointing and DeepSpeed
  ZeRO-2 (bf16) when DeepSpeed imports, else a plain torch AdamW loop (said in the table), full
  context vs LLoCO (goal >= 11.5x).
MFU counts 2 FLOPs per weight per position in the decoder layers plus causal attention
(2 * width^2 * hidden per layer), over the datasheet's dense bf16 peak (989 TFLOP/s for an
H100/H200 SXM); the measured bf16 matmul rate is printed beside it.

`--device cpu --tiny` runs every piece on a tiny shape on CPU (float32) through the same code:
the script's logic is tested without a GPU (tests/test_bench.py). A time budget (`--budget`)
skips what would not fit; each row is printed as soon as it is measured, the table at the end.

    bench/gpu.sh                       # on the GPU machine
    bench/gpu.sh --device cpu --tiny   # anywhere, seconds
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import os
import signal
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from bench.common import Goal, Row, fmt, forward_flops, interleave, line, ratio_row, table, timed_generate
from lloco_core.model.autocompressor import LlamaAutoCompressorModel
from lloco_core.model.batching import GPU_BATCH_POSITIONS, plan_batches
from lloco_core.model.summarize import summarize_documents

IGNORE_INDEX = -100  # torch's cross-entropy ignore_index (lloco_core.model.decoder imports pydantic, absent on the GPU image)
DATASHEET_BF16_TFLOPS = 989.0  # H100/H200 SXM dense bf16
GOAL_BATCHED, GOAL_MFU, GOAL_LATENCY, GOAL_FINETUNE = Goal(">=", 3.0), Goal(">=", 0.5), Goal(">=", 7.6), Goal(">=", 11.5)


@dataclass(frozen=True)
class Shape:
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int
    summary: int
    segment: int
    short_tokens: int
    long_tokens: int
    docs: int  # documents per compression case (at least the batch size)
    latency_context: int
    finetune_context: int
    prompt: int
    answer: int
    new_tokens: int


LLAMA2_7B = Shape(4096, 32, 32, 11008, 32000, 50, 1536, 200, 6144, 64, 32768, 16384, 64, 16, 32)
TINY = Shape(64, 2, 4, 172, 2000, 8, 128, 40, 400, 8, 1024, 512, 16, 4, 4)


@dataclass(frozen=True)
class Settings:
    """What `plan_batches` reads of the encoder settings."""

    summary_length: int
    accumulate_summary: bool = True


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds(device: torch.device, fn: Callable[[], object]) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def matmul_tflops(device: torch.device, dtype: torch.dtype, n: int) -> float:
    """Median rate of an n^3 matmul on random data (3 warm-ups, 10 timed)."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    return statistics.median(2 * n**3 / seconds(device, lambda: a @ b) / 1e12 for _ in range(10))


def build(shape: Shape, device: torch.device, dtype: torch.dtype, max_positions: int) -> LlamaAutoCompressorModel:
    """Random weights, built directly on the device in the compute dtype (a 7B model never sits on the CPU)."""
    from transformers import LlamaConfig

    config = LlamaConfig(vocab_size=shape.vocab, hidden_size=shape.hidden, intermediate_size=shape.intermediate, num_hidden_layers=shape.layers,
                         num_attention_heads=shape.heads, num_key_value_heads=shape.heads, max_position_embeddings=max_positions,
                         tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=0, attn_implementation="sdpa")
    config.summary_length, config.accumulate_summary, config.segment_length = shape.summary, True, shape.segment
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        torch.manual_seed(0)
        with torch.device(device):
            model = LlamaAutoCompressorModel(config)
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


def set_attention(model: torch.nn.Module, impl: str) -> None:
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(impl)
    else:
        model.config._attn_implementation = impl


def flash_attention_installed(device: torch.device) -> bool:
    return device.type == "cuda" and importlib.util.find_spec("flash_attn") is not None


def document_flops(lengths: list[int], config) -> float:
    """Model FLOPs of one document's encoder passes (segment i's input: i*S + tokens + S positions)."""
    S = int(config.summary_length)
    return sum(forward_flops(config, i * S + n + S) for i, n in enumerate(lengths))


def documents(shape: Shape, tokens: int, n: int, seed: int) -> list[list[list[int]]]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(4, shape.vocab, (tokens,), generator=gen).tolist()
        out.append([ids[i : i + shape.segment] for i in range(0, tokens, shape.segment)])
    return out


def compress_pass(model: LlamaAutoCompressorModel, docs: list[list[list[int]]], batch_size: int, positions: int) -> int:
    """What compress_shard does with one shard's token ids: plan the batches, encode each. Returns passes."""
    batches = plan_batches([[len(s) for s in d] for d in docs], Settings(model.config.summary_length), batch_size, positions)
    for batch in batches:
        summarize_documents(model, [docs[d] for d in batch])
    return len(batches)


def compression_rows(model: LlamaAutoCompressorModel, shape: Shape, device: torch.device, batch_sizes: list[int], deadline: float) -> list[Row]:
    impls = ["sdpa"] + (["flash_attention_2"] if flash_attention_installed(device) else [])
    rows: list[Row] = []
    mfus: list[tuple[float, str]] = []
    if "flash_attention_2" not in impls:
        rows.append(Row("a", "compress with flash-attention-2", "-", "-", None, note="not measured: flash_attn is not installed (or no CUDA)"))
    for impl in impls:
        set_attention(model, impl)
        for kind, tokens in (("short", shape.short_tokens), ("long", shape.long_tokens)):
            docs = documents(shape, tokens, max(shape.docs, max(batch_sizes)), seed=tokens)
            flops_per_doc = document_flops([len(s) for s in docs[0]], model.config)
            compress_pass(model, docs[:4], 4, GPU_BATCH_POSITIONS)  # warm-up (kernels, allocator, batched shapes)
            base_rate = None
            for b in batch_sizes:
                if time.time() > deadline:
                    rows.append(Row("a", f"compress {kind}, {impl}, batch {b}", "-", "-", None, note="skipped: time budget"))
                    continue
                work = docs[: max(shape.docs, b)]
                passes: list[int] = []
                elapsed = seconds(device, lambda w=work, b=b, passes=passes: passes.append(compress_pass(model, w, b, GPU_BATCH_POSITIONS)))
                rate = len(work) * tokens / elapsed
                mfu = len(work) * flops_per_doc / elapsed / 1e12 / DATASHEET_BF16_TFLOPS
                base_rate = base_rate or rate
                rows.append(Row("a", f"compress {kind} ({tokens:,} tok), {impl}, batch {b}", f"batch {batch_sizes[0]} {base_rate:,.0f} tok/s",
                                f"{rate:,.0f} tok/s, MFU {mfu:.0%}, {len(work) / passes[0]:.0f}/pass", rate / base_rate, "x",
                                goal=GOAL_BATCHED if kind == "short" and b >= 16 else None,
                                note=f"{len(work)} documents; up to {GPU_BATCH_POSITIONS:,} positions a pass (GPU_BATCH_POSITIONS)" if b == batch_sizes[-1] else ""))
                mfus.append((mfu, rows[-1].measure))
                print(line(rows[-1]), flush=True)
            sync(device)
            if device.type == "cuda":
                torch.cuda.empty_cache()
    if mfus:
        best, where = max(mfus)
        rows.append(Row("a", "best compression MFU (datasheet bf16 peak)", "-", where, best, "%", goal=GOAL_MFU))
    set_attention(model, "sdpa")
    return rows


def latency_rows(model: LlamaAutoCompressorModel, shape: Shape, device: torch.device, repeats: int) -> list[Row]:
    """Full context vs LLoCO answer latency at `latency_context` tokens; same prompt on both sides."""
    gen = torch.Generator().manual_seed(1)
    context = torch.randint(4, shape.vocab, (shape.latency_context,), generator=gen).tolist()
    prompt = torch.randint(4, shape.vocab, (shape.prompt,), generator=gen).tolist()
    segments = [context[i : i + shape.segment] for i in range(0, len(context), shape.segment)]
    out: list[torch.Tensor] = []
    compress_s = seconds(device, lambda: out.extend(summarize_documents(model, [segments])))
    summaries = out[0]
    embed = model.get_input_embeddings()
    with torch.inference_mode():
        full = embed(torch.tensor([*context, *prompt], device=device))  # the paper's layouts: no BOS
        lloco = torch.cat([summaries.reshape(-1, shape.hidden).to(full.dtype), embed(torch.tensor(prompt, device=device))])
    go = lambda e: timed_generate(model, e, shape.new_tokens, 0)
    go(lloco), go(full)  # warm-up
    values = interleave({"full context": lambda: go(full), "lloco": lambda: go(lloco)}, repeats)
    return [ratio_row("c", f"answer latency at {shape.latency_context / 1024:g}k context (prefill + {shape.new_tokens} tokens)", values, "full context", "lloco",
                      higher_is_better=False, unit_label="s", digits=".3f", goal=GOAL_LATENCY,
                      note=f"{full.shape[0]:,} vs {lloco.shape[0]:,} prompt positions; compressing the context (offline) took {compress_s:.2f} s")]


@contextlib.contextmanager
def trainer(model: torch.nn.Module, device: torch.device) -> Iterator[tuple[Callable[[torch.Tensor, torch.Tensor], None], str]]:
    """LoRA (r 8, q/k/v/o) + gradient checkpointing; DeepSpeed ZeRO-2 when it imports, else plain AdamW."""
    from peft import LoraConfig, get_peft_model

    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    peft = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], task_type="CAUSAL_LM"))
    peft.train()
    optimizer = torch.optim.AdamW([p for p in peft.parameters() if p.requires_grad], lr=2e-5)
    use_cuda = device.type == "cuda"
    try:
        from lloco_core.training import engine as ds

        env = ds.prepare_environment(use_cuda)
        ds.init_distributed(env, use_cuda)
        engine = ds.initialize(peft, optimizer, None, ds.deepspeed_config(1, 1, 1, 2, use_cuda, 1.0))
    except ImportError as err:
        def plain(embeds: torch.Tensor, labels: torch.Tensor) -> None:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_cuda):
                loss = peft(inputs_embeds=embeds, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for p in peft.parameters() if p.requires_grad], 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        yield plain, f"plain torch AdamW ({type(err).__name__}: {err})"
        return

    def step(embeds: torch.Tensor, labels: torch.Tensor) -> None:
        loss = engine(inputs_embeds=embeds, labels=labels).loss
        engine.backward(loss)
        engine.step()

    yield step, f"DeepSpeed ZeRO-2, bf16 {use_cuda}"


def finetune_rows(model: LlamaAutoCompressorModel, shape: Shape, device: torch.device, repeats: int) -> list[Row]:
    text = shape.prompt + shape.answer
    n_vectors = math.ceil(shape.finetune_context / shape.segment) * shape.summary
    dtype = model.get_input_embeddings().weight.dtype
    gen = torch.Generator(device="cpu").manual_seed(2)
    raw = (torch.randn(1, shape.finetune_context + text, shape.hidden, generator=gen) * 0.02).to(device, dtype)
    compressed = (torch.randn(1, n_vectors + text, shape.hidden, generator=gen) * 0.02).to(device, dtype)

    def labels(embeds: torch.Tensor) -> torch.Tensor:
        out = torch.full(embeds.shape[:2], IGNORE_INDEX, dtype=torch.long, device=device)
        out[:, -shape.answer:] = torch.randint(4, shape.vocab, (1, shape.answer), generator=gen).to(device)
        return out

    raw_labels, lloco_labels = labels(raw), labels(compressed)
    with trainer(model, device) as (step, how):
        step(raw, raw_labels), step(compressed, lloco_labels)  # warm-up
        lloco_steps = 5
        values = interleave({"full context": lambda: seconds(device, lambda: step(raw, raw_labels)),
                             "lloco": lambda: seconds(device, lambda: [step(compressed, lloco_labels) for _ in range(lloco_steps)]) / lloco_steps}, repeats)
    return [ratio_row("d", f"finetune steps/s at {shape.finetune_context / 1024:g}k context, LoRA + grad. checkpointing",
                      {k: [1 / v for v in vals] for k, vals in values.items()}, "full context", "lloco", higher_is_better=True, unit_label="steps/s",
                      digits=".3g", goal=GOAL_FINETUNE, note=f"{raw.shape[1]:,} vs {compressed.shape[1]:,} positions, batch 1; {how}")]


class TimeUp(Exception):
    """SIGTERM from gpu.sh's `timeout`: stop measuring, print what was measured."""


def _time_up(signum: int, frame: object) -> None:
    raise TimeUp


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--tiny", action="store_true", help="a tiny shape (hidden 64, 2 layers): exercises the script anywhere in seconds")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--budget", type=float, default=400.0, help="seconds; sections that would start later are skipped")
    parser.add_argument("--latency-context", type=int, default=None)
    parser.add_argument("--finetune-context", type=int, default=None)
    parser.add_argument("--only", default="acd", help="sections: a compression, c latency, d finetune")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _time_up)
    started = time.time()
    deadline = started + args.budget
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("bench/gpu.py: --device cuda but CUDA is not available (use --device cpu --tiny to exercise the script)", file=sys.stderr)
        return 2
    shape = TINY if args.tiny else LLAMA2_7B
    shape = replace(shape, latency_context=args.latency_context or shape.latency_context, finetune_context=args.finetune_context or shape.finetune_context)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({os.cpu_count()} cores)"
    peak = matmul_tflops(device, dtype, 8192 if device.type == "cuda" and not args.tiny else 512)
    print(f"lloco GPU bench: {name}; torch {torch.__version__}; {dtype}; flash_attn {'installed' if flash_attention_installed(device) else 'not installed'}; "
          f"measured {dtype} matmul {peak:,.1f} TFLOP/s (MFU below is against the datasheet {DATASHEET_BF16_TFLOPS:.0f})", flush=True)
    build_s = time.time()
    model = build(shape, device, dtype, max(shape.latency_context, shape.finetune_context) + 1024)
    print(f"model: {sum(p.numel() for p in model.parameters()) / 1e9:.2f}B parameters, random init on {device} in {time.time() - build_s:.1f} s", flush=True)
    rows: list[Row] = []
    failed = 0
    sections = {"a": lambda: compression_rows(model, shape, device, args.batch_sizes, deadline),
                "c": lambda: latency_rows(model, shape, device, args.repeats),
                "d": lambda: finetune_rows(model, shape, device, args.repeats)}  # last: it wraps the model with LoRA
    for key, section in sections.items():
        if key not in args.only:
            continue
        if time.time() > deadline:
            rows.append(Row(key, f"section {key}", "-", "-", None, note="skipped: time budget"))
            continue
        try:
            got = section()
        except TimeUp:
            rows.append(Row(key, f"section {key}", "-", "-", None, note="stopped: the outer time limit (SIGTERM) came first"))
            break
        except Exception as err:  # noqa: BLE001 - one failed section must not lose the others
            traceback.print_exc()
            failed += 1
            got = [Row(key, f"section {key} failed", "-", "-", None, note=f"{type(err).__name__}: {err}"[:300])]
        for r in got:
            if key != "a":
                print(line(r), flush=True)
        rows += got
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print(f"\nlloco GPU bench on {name}, {time.time() - started:.0f} s (peak {fmt(peak, 'TFLOP/s')} {dtype} matmul measured)")
    print(table(rows))
    print(json.dumps({"bench": "gpu", "device": name, "tiny": args.tiny, "seconds": round(time.time() - started, 1), "failed": failed,
                      "rows": [r.as_dict() for r in rows]}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
