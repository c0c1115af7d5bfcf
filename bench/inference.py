"""Answering latency: LLoCO (summary vectors + prompt) against the full raw context, same model, one run.

For each context length (default 4k, 8k, 16k, 32k tokens) the same small LLaMA-architecture model
(paper geometry: 1536-token segments -> 50 summary vectors) answers one question twice, both
through `lloco_core.qa.answer.generate_batch`'s path (transformers `generate`, KV cache, greedy):
- full: `[context tokens ; prompt]` as input embeddings;
- LLoCO: `[summary vectors of every segment ; prompt]` (`decoder.build_decoder_inputs`, the paper's
  layout: no BOS),
  with summaries computed by the real compressor beforehand (offline cost, reported apart).
Timed: prefill + exactly `--new-tokens` generated tokens (min = max, EOS cannot stop early).
Prints per length the prompt tokens of both, the token ratio and the latency ratio.
Row (c) of `bench/run.py` (`measure`) runs both sides interleaved, `--repeats` times each, and
reports the median of the per-repeat latency ratios, and the prompt-position ratio counted two
ways: context only (document tokens / summary vectors) and whole prompt (question included).

    .venv/bin/python bench/inference.py [--hidden 256 --layers 2 --sizes 4096 8192 16384 32768 --repeats 1 --threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench.common import Goal, Row, interleave, ratio_row, timed_generate
from lloco_core.model.autocompressor import load_compressor
from lloco_core.model.decoder import build_decoder_inputs, encode_request
from lloco_core.model.summarize import summarize_documents
from lloco_core.model.tiny import build_tiny_compressor
from lloco_core.qa.answer import Question
from lloco_core.qa.prompts import default_prompts

QUESTION = "What did the harbor master hide under the blue flowerpot, and why?"


GOAL_LATENCY, GOAL_POSITIONS = Goal(">=", 7.6), Goal(">=", 30.0)


def measure(work: Path, quick: bool = False, repeats: int | None = None, sizes: list[int] | None = None, hidden: int = 256, layers: int = 2,
            new_tokens: int = 32, threads: int = 1) -> list[Row]:
    """Rows c: latency ratio per context length (goal at the longest), prompt-position ratios."""
    repeats = repeats or (1 if quick else 3)
    sizes = sizes or ([1536, 3072] if quick else [4096, 8192, 16384, 32768])
    if quick:
        hidden, new_tokens = 64, 4
    segment_length, summary_length = 1536, 50
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    path = build_tiny_compressor(work / "inference-model", hidden_size=hidden, num_layers=layers, num_heads=max(1, hidden // 64), summary_length=summary_length,
                                 segment_length=segment_length, max_position_embeddings=max(sizes) + 512, vocab_size=2000)
    loaded = load_compressor(str(path), "cpu")
    model, tok = loaded.model, loaded.tokenizer
    prompt, _ = encode_request(tok, default_prompts(), Question(QUESTION))
    timed_generate(model, build_decoder_inputs(model, None, prompt), new_tokens, tok.pad_token_id)  # warm-up
    rows = []
    try:
        for size in sizes:
            context = torch.randint(4, len(tok), (size,), generator=torch.Generator().manual_seed(size)).tolist()
            segments = [context[i : i + segment_length] for i in range(0, size, segment_length)]
            summaries = summarize_documents(model, [segments])[0]
            with torch.inference_mode():
                full = model.get_input_embeddings()(torch.tensor([*context, *prompt]))
                lloco = build_decoder_inputs(model, summaries, prompt)
            values = interleave({"full context": lambda e=full: timed_generate(model, e, new_tokens, tok.pad_token_id),
                                 "lloco": lambda e=lloco: timed_generate(model, e, new_tokens, tok.pad_token_id)}, repeats)
            last = size == sizes[-1]
            rows.append(ratio_row("c", f"answer latency at {size / 1024:g}k context (prefill + {new_tokens} tokens)", values, "full context", "lloco",
                                  higher_is_better=False, unit_label="s", digits=".3f", goal=GOAL_LATENCY if last else None,
                                  note=f"hidden {hidden}, {layers} layers, {threads} thread(s); GPU 7B figure: bench/gpu.sh" if last else ""))
            if last:
                vectors = summaries.shape[0] * summary_length
                extra = lloco.shape[0] - vectors  # the prompt's own positions, the same on both sides
                rows.append(Row("c", f"prompt positions at {size / 1024:g}k, context only", f"{size:,} tokens", f"{vectors:,} vectors", size / vectors, "x",
                                goal=GOAL_POSITIONS, note=f"{len(segments)} segments of <= {segment_length} tokens -> {summary_length} vectors each; "
                                f"a full segment gives {segment_length / summary_length:.2f}x, the short last one less"))
                rows.append(Row("c", f"prompt positions at {size / 1024:g}k, prompt included", f"{full.shape[0]:,} positions", f"{lloco.shape[0]:,} positions",
                                full.shape[0] / lloco.shape[0], "x", goal=GOAL_POSITIONS, note=f"both sides carry the same {extra} prompt positions (template + question)"))
    finally:
        torch.set_num_threads(previous_threads)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--summary-length", type=int, default=50)
    parser.add_argument("--segment-length", type=int, default=1536)
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 8192, 16384, 32768])
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per system and length (median reported); one warm-up runs first")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads; 1 by default: on a shared 2-core machine two threads contend and a 32-token decode took 30x longer")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = build_tiny_compressor(
            tmp, hidden_size=args.hidden, num_layers=args.layers, num_heads=args.heads, summary_length=args.summary_length,
            segment_length=args.segment_length, max_position_embeddings=max(args.sizes) + 512, vocab_size=2000,
        )
        loaded = load_compressor(str(path), args.device)
    model, tok = loaded.model, loaded.tokenizer
    prompt, _ = encode_request(tok, default_prompts(), Question(QUESTION))
    vocab = len(tok)
    print(f"model: hidden {args.hidden}, {args.layers} layers, {args.heads} heads, {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M params, "
          f"{loaded.device} {loaded.dtype}, {torch.get_num_threads()} threads; segments {args.segment_length} tokens -> {args.summary_length} vectors; "
          f"prefill + {args.new_tokens} tokens, median of {args.repeats}")
    print(f"{'context':>8} {'full tok':>9} {'lloco tok':>9} {'tok ratio':>9} {'full s':>8} {'lloco s':>8} {'speedup':>8} {'compress s (offline)':>21}")
    warm = build_decoder_inputs(model, None, prompt)
    timed_generate(model, warm, args.new_tokens, tok.pad_token_id)  # one warm-up for the whole run
    results = []
    for size in args.sizes:
        gen = torch.Generator().manual_seed(size)
        context = torch.randint(4, vocab, (size,), generator=gen).tolist()
        segments = [context[i : i + args.segment_length] for i in range(0, size, args.segment_length)]
        start = time.perf_counter()
        summaries = summarize_documents(model, [segments])[0]  # [n_seg, S, H]
        compress_s = time.perf_counter() - start
        embed = model.get_input_embeddings()
        with torch.inference_mode():
            full = embed(torch.tensor([*context, *prompt], device=loaded.device))
            lloco = build_decoder_inputs(model, summaries, prompt)
        times: dict[str, list[float]] = {"full": [], "lloco": []}
        for name, embeds in (("lloco", lloco), ("full", full)):
            times[name] = [timed_generate(model, embeds, args.new_tokens, tok.pad_token_id) for _ in range(args.repeats)]
        full_s, lloco_s = statistics.median(times["full"]), statistics.median(times["lloco"])
        row = {"context_tokens": size, "full_prompt_tokens": int(full.shape[0]), "lloco_prompt_tokens": int(lloco.shape[0]),
               "token_ratio": round(full.shape[0] / lloco.shape[0], 2), "full_s": round(full_s, 4), "lloco_s": round(lloco_s, 4),
               "speedup": round(full_s / lloco_s, 2), "compress_s": round(compress_s, 3)}
        results.append(row)
        print(f"{size:>8} {row['full_prompt_tokens']:>9} {row['lloco_prompt_tokens']:>9} {row['token_ratio']:>8.1f}x {full_s:>8.3f} {lloco_s:>8.3f} "
              f"{row['speedup']:>7.2f}x {compress_s:>21.2f}", flush=True)
    print("paper: ~30x fewer prompt tokens, up to 7.62x lower latency")
    print(json.dumps({"bench": "inference", "results": results}))


if __name__ == "__main__":
    main()
