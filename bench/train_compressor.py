"""Compressor-training throughput on CPU: document tokens per second of `train_compressor` (DeepSpeed,
the store, checkpoints off) for each objective, against plain causal-LM training of the same base
on the same token sequences in the same DeepSpeed engine, measured side by side in one run.

    .venv/bin/python bench/train_compressor.py [--steps 20] [--hidden 64] [--layers 2]

The base is a random-init LLaMA (its speed, not its weights, matters here) on the synthetic
benchmark: documents of 3 x 32 tokens, summary length 4. Prints one JSON line per measurement and
a table. `document tokens/s` counts the text the encoder reads (each step: 32 documents and all
their questions for compress-then-answer; 4 sequences of 4 random-length segments for the
AutoCompressor objective); the baseline reads the same sequences with no segments or summaries.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch


def plain_lm_tokens_per_s(folder: str, sequences: torch.Tensor, steps: int) -> float:
    """Causal-LM training (labels = inputs) of the base on `sequences` [N, T], 4 per step, one DeepSpeed engine."""
    from transformers import LlamaForCausalLM

    from lloco_core.training import engine as ds

    model = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="sdpa")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    engine = ds.initialize(model, optimizer, None, ds.deepspeed_config(1, 1, 1, 0, False, 1.0))
    times = []
    for step in range(steps + 1):
        batch = sequences[(step * 4) % len(sequences) :][:4]
        start = time.perf_counter()
        out = engine(input_ids=batch, labels=batch)
        engine.backward(out.loss)
        engine.step()
        if step:
            times.append(time.perf_counter() - start)
    return 4 * sequences.shape[1] / (sum(times) / len(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from lloco_core.config import IngestConfig
    from lloco_core.model.autocompressor import load_tokenizer
    from lloco_core.qa.synthetic import DEMO_COMPRESSOR, SyntheticConfig, build_base_model, write_benchmark
    from lloco_core.store.documents import ingest
    from lloco_core.training.compressor import train_compressor
    from lloco_core.training.compressor_config import CompressorConfig
    from lloco_core.training.compressor_data import LMData, token_stream

    work = Path(tempfile.mkdtemp(prefix="lloco-bench-compressor-"))
    bench = SyntheticConfig(train_documents=2000, heldout_documents=1)
    files = write_benchmark(work / "bench", bench)
    base = build_base_model(work / "base", bench, hidden_size=args.hidden, num_layers=args.layers)
    root = str(work / "store")
    ingest(IngestConfig(root=root, corpus="bench", source=str(files.corpus)))
    common = {**DEMO_COMPRESSOR, "max_steps": args.steps + 1, "warmup_steps": 0, "checkpoint_every": 10**6, "device": "cpu"}
    rows = []
    for name, weights in (("compress-then-answer", {"qa_weight": 1.0, "lm_weight": 0.0}), ("AutoCompressor objective", {"qa_weight": 0.0, "lm_weight": 1.0})):
        config = CompressorConfig(root=root, corpus="bench", base=str(base), qa=str(files.train_qa), **{**common, **weights, "output_key": f"bench-{weights['lm_weight']}"})
        summary = train_compressor(config)
        rows.append({"run": name, "steps": summary["steps"], "seconds": summary["seconds"], "document_tokens_per_s": summary["tokens_per_s"], "positions_per_s": summary["positions_per_s"]})
        print(json.dumps(rows[-1]), flush=True)
    lm_config = CompressorConfig(root=root, corpus="bench", base=str(base), **{**common, "qa_weight": 0.0, "lm_weight": 1.0})
    texts = [json.loads(line)["text"] for line in files.corpus.read_text().splitlines()]
    sequences = LMData.build(token_stream(load_tokenizer(str(base)), texts), lm_config, bench.segment_length).sequences
    baseline = plain_lm_tokens_per_s(str(base), sequences, args.steps)
    rows.append({"run": "plain causal LM (baseline)", "document_tokens_per_s": round(baseline, 1)})
    print(json.dumps(rows[-1]), flush=True)
    print(f"\nrun | document tokens/s | vs plain LM  (hidden {args.hidden}, {args.layers} layers, {torch.get_num_threads()} threads)")
    for r in rows:
        print(f"{r['run']} | {r['document_tokens_per_s']:,.0f} | {r['document_tokens_per_s'] / baseline:.2f}x")


if __name__ == "__main__":
    main()
