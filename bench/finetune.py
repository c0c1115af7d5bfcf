"""Training throughput: LLoCO (summary embeddings as context) vs the same decoder finetuned on the
full raw context, at documents of ~4k, 8k and 16k tokens, through the same DeepSpeed engine
(ZeRO-2, LoRA r 8 on q/k/v/o) on CPU.

    .venv/bin/python bench/finetune.py [--lengths 4096 8192 16384] [--steps 3]

The decoder is a small random-init LLaMA (hidden 256, 2 layers); the compression ratio is the
paper's (segments of 1536 tokens -> 50 summary vectors). Summary vectors are random tensors of
the stored shape: a training step's cost depends on shapes, not values, and compression is an
offline job paid once per corpus (see bench/compress.py for its cost). Prompt 64 tokens, answer 16.
Row (d) of `bench/run.py` (`measure`) interleaves the two: each repeat times one raw step and the
mean of several LLoCO steps (they are ~10-100x shorter), and reports the median per-repeat ratio.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from bench.common import Goal, Row, interleave, ratio_row
from lloco_core.model.decoder import IGNORE_INDEX
from lloco_core.training import engine as ds

SEGMENT, SUMMARY, PROMPT, ANSWER = 1536, 50, 64, 16


def build(hidden: int, layers: int, window: int):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=2000, hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=window, attn_implementation="sdpa", use_cache=False)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    return get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], task_type="CAUSAL_LM"))


def answer_labels(embeds: torch.Tensor) -> torch.Tensor:
    """Loss on the last ANSWER positions only, as finetuning has it."""
    labels = torch.full(embeds.shape[:2], IGNORE_INDEX, dtype=torch.long, device=embeds.device)
    labels[:, -ANSWER:] = torch.randint(0, 2000, (1, ANSWER))
    return labels


def steps(engine, embeds: torch.Tensor, n: int) -> float:
    """Mean seconds of `n` training steps (batch of one example)."""
    labels = answer_labels(embeds)
    start = time.perf_counter()
    for _ in range(n):
        out = engine(inputs_embeds=embeds, labels=labels)
        engine.backward(out.loss)
        engine.step()
    return (time.perf_counter() - start) / n


def run(engine, embeds: torch.Tensor, n: int) -> float:
    """Seconds per training step, after one warm-up step."""
    steps(engine, embeds, 1)
    return steps(engine, embeds, n)


def example_inputs(model, length: int, hidden: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(raw, compressed) inputs of one example: every document token, or its summary vectors; both + prompt + answer."""
    text = PROMPT + ANSWER
    raw = model.get_input_embeddings()(torch.randint(0, 2000, (length + text,))).detach().unsqueeze(0)
    compressed = torch.randn(1, math.ceil(length / SEGMENT) * SUMMARY + text, hidden) * 0.02
    return raw, compressed


GOAL = Goal(">=", 11.5)


def length_row(engine, raw: torch.Tensor, compressed: torch.Tensor, length: int, repeats: int, lloco_steps: int, last: bool, model: str) -> Row:
    """One length: one raw step against the mean of `lloco_steps` LLoCO steps, interleaved."""
    steps(engine, raw, 1), steps(engine, compressed, 1)  # warm-up
    values = interleave({"full context": lambda: steps(engine, raw, 1), "lloco": lambda: steps(engine, compressed, lloco_steps)}, repeats)
    return ratio_row("d", f"finetune examples/s at {length / 1024:g}k tokens ({raw.shape[1]:,} vs {compressed.shape[1]:,} positions)",
                     {k: [1 / v for v in vals] for k, vals in values.items()}, "full context", "lloco", higher_is_better=True,
                     unit_label="ex/s", digits=".3g", goal=GOAL if last else None,
                     note=f"DeepSpeed ZeRO-2, LoRA r 8 on q/k/v/o, {model}, CPU fp32; GPU 7B figure: bench/gpu.sh" if last else "")


def measure(work: Path | None = None, quick: bool = False, repeats: int | None = None, lengths: list[int] | None = None, hidden: int = 256, layers: int = 2) -> list[Row]:
    """Rows d: examples/s ratio per document length, interleaved; goal at the longest."""
    repeats = repeats or (1 if quick else 3)
    lengths = lengths or ([1536, 3072] if quick else [4096, 8192, 16384])
    if quick:
        hidden = 64
    env = ds.prepare_environment(False)
    ds.init_distributed(env, False)
    model = build(hidden, layers, max(lengths) + PROMPT + ANSWER)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-5)
    engine = ds.initialize(model, optimizer, None, ds.deepspeed_config(1, 1, 1, 2, False, 1.0))
    rows = []
    for length in lengths:
        raw, compressed = example_inputs(model, length, hidden)
        rows.append(length_row(engine, raw, compressed, length, repeats, 2 if quick else 10, length == lengths[-1], f"hidden {hidden}, {layers} layers"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[4096, 8192, 16384])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    env = ds.prepare_environment(False)
    ds.init_distributed(env, False)
    model = build(args.hidden, args.layers, max(args.lengths) + PROMPT + ANSWER)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-5)
    engine = ds.initialize(model, optimizer, None, ds.deepspeed_config(1, 1, 1, 2, False, 1.0))
    rows = []
    for length in args.lengths:
        text = PROMPT + ANSWER
        raw, compressed = example_inputs(model, length, args.hidden)
        n_vectors = compressed.shape[1] - text
        # LLoCO steps are ~10-100x shorter: more of them keep its timing out of the noise.
        t_raw, t_lloco = run(engine, raw, args.steps), run(engine, compressed, max(args.steps, 20))
        rows.append({
            "doc_tokens": length,
            "raw_positions": length + text,
            "lloco_positions": n_vectors + text,
            "raw_examples_per_s": round(1 / t_raw, 3),
            "lloco_examples_per_s": round(1 / t_lloco, 3),
            "raw_tokens_per_s": round((length + text) / t_raw, 1),
            "lloco_doc_tokens_per_s": round((length + text) / t_lloco, 1),
            "speedup": round(t_raw / t_lloco, 2),
        })
        print(json.dumps(rows[-1]), flush=True)
    print("\ndoc tokens | raw ex/s | LLoCO ex/s | speedup (paper: 11.52x on A100, LLaMA-2-7B)")
    for r in rows:
        print(f"{r['doc_tokens']:>10} | {r['raw_examples_per_s']:>8} | {r['lloco_examples_per_s']:>10} | {r['speedup']:>6}x")


if __name__ == "__main__":
    main()
