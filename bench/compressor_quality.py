"""Held-out accuracy of a trained compressor against its summary length, at a fixed step budget,
through the real stages: train_compressor -> compress -> evaluate (LLoCO without adapter, greedy).

    OMP_NUM_THREADS=1 .venv/bin/python bench/compressor_quality.py [--summary-lengths 1 2 4 8] [--steps 600] [--limit 240]

The demo's benchmark and recipe (lloco_core/qa/synthetic.py: 3 segments of 16 tokens per document,
6 facts, 8 values per field, chance 12.5%) with only the summary length changed; every run starts
from the same random base model and sees the same batches. Prints one JSON line per summary length
(exact match, context positions per document, training seconds and document tokens/s) and a table.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--summary-lengths", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--limit", type=int, default=240)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from lloco_core.config import CompressConfig, IngestConfig
    from lloco_core.model.compress import compress
    from lloco_core.qa.config import EvaluateConfig
    from lloco_core.qa.evaluate import evaluate
    from lloco_core.qa.metrics import exact_match
    from lloco_core.qa.synthetic import DEMO_BENCHMARK, DEMO_COMPRESSOR, build_base_model, write_benchmark
    from lloco_core.store.documents import ingest
    from lloco_core.training.compressor import train_compressor
    from lloco_core.training.compressor_config import CompressorConfig

    work = Path(tempfile.mkdtemp(prefix="lloco-bench-quality-"))
    files = write_benchmark(work / "bench", DEMO_BENCHMARK)
    base = build_base_model(work / "base", DEMO_BENCHMARK)
    rows = []
    for length in args.summary_lengths:
        root, corpus = str(work / f"store-{length}"), "synthetic"
        ingest(IngestConfig(root=root, corpus=corpus, source=str(files.corpus)))
        started = time.perf_counter()
        trained = train_compressor(
            CompressorConfig(root=root, corpus=corpus, base=str(base), qa=str(files.train_qa), device="cpu", **{**DEMO_COMPRESSOR, "summary_length": length, "max_steps": args.steps})
        )
        seconds = time.perf_counter() - started
        compress(CompressConfig(root=root, corpus=corpus, model=trained["checkpoint"], device="cpu"))
        report = evaluate(
            EvaluateConfig(root=root, corpus=corpus, eval_set=str(files.heldout_qa), model=trained["checkpoint"], no_adapter=True,
                           systems=["lloco_base"], limit=args.limit, max_new_tokens=4, batch_size=64, device="cpu")
        )  # fmt: skip
        predictions = [json.loads(line) for line in Path(report["out"], "predictions.jsonl").read_text().splitlines()]
        rows.append({
            "summary_length": length,
            "exact_match": round(sum(exact_match(p["prediction"], p["references"]) for p in predictions) / len(predictions), 4),
            "context_positions": DEMO_BENCHMARK.segments * length,
            "document_tokens": DEMO_BENCHMARK.segments * DEMO_BENCHMARK.segment_length,
            "steps": trained["steps"],
            "train_seconds": round(seconds, 1),
            "document_tokens_per_s": trained["tokens_per_s"],
            "last_loss": trained["last_loss"],
        })
        print(json.dumps(rows[-1]), flush=True)
    print(f"\nsummary length | context positions (document {rows[0]['document_tokens']} tokens) | held-out exact match (chance {DEMO_BENCHMARK.chance:.1%}) | train s")
    for r in rows:
        print(f"{r['summary_length']:>14} | {r['context_positions']:>9} | {r['exact_match']:.3f} | {r['train_seconds']}")


if __name__ == "__main__":
    main()
