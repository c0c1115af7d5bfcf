"""`make demo`: LLoCO's answer quality on a laptop, through the whole pipeline flow.

1. A synthetic long-document benchmark (lloco_core/qa/synthetic.py): records of 6 facts spread
   over 3 segments of 16 tokens, questions answered by one fact, train and held-out documents.
2. A tiny random-init LLaMA base model (hidden 64, 2 layers), turned into an AutoCompressor by the
   pipeline's `train_compressor` stage on compress-then-answer over the train documents.
3. The same pipeline run then ingests, compresses, finetunes a LoRA adapter and evaluates on the
   held-out documents, with a decoder window shorter than a document, so the truncated raw-context
   baseline must drop facts.

Everything is local: files under ./demo_output (or $LLOCO_DEMO_DIR), the store under ./demo_output/store, Prefect in its
ephemeral mode. A re-run reuses every finished stage. A tiny model on synthetic data shows that the
method works end to end; it says nothing about the published 7B model's scores.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

OUT = Path(os.environ.get("LLOCO_DEMO_DIR", "demo_output")).resolve()
CORPUS = "synthetic"
WINDOW = 64
"""Decoder positions at evaluation: a document (48 tokens) plus its prompt (46) does not fit."""


def main() -> int:
    from lloco_core.logs import quiet_third_party

    quiet_third_party()  # before torch/transformers/deepspeed load: no third-party noise (LLOCO_VERBOSE=1 keeps it)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # a tiny model's ops are too small to split: one thread is faster (also in the training child)
    # flow runs say what each stage did; the 64 shard tasks' own lines would bury that (the UI keeps them when served)
    os.environ.setdefault("PREFECT_LOGGING_LOGGERS_PREFECT_TASK_RUNS_LEVEL", "WARNING")
    started = time.perf_counter()
    OUT.mkdir(parents=True, exist_ok=True)
    from flows.pipeline import EvaluateOptions, FinetuneOptions, PipelineConfig, PipelineStages, TrainCompressorOptions, pipeline_flow
    from lloco_core.qa.report import markdown_table
    from lloco_core.qa.synthetic import DEMO_BENCHMARK, DEMO_COMPRESSOR, build_base_model, write_benchmark

    bench = write_benchmark(OUT / "bench", DEMO_BENCHMARK)
    base = OUT / "base-model"
    if not (base / "config.json").exists():
        build_base_model(base, DEMO_BENCHMARK)
    root = str(OUT / "store")
    result = pipeline_flow(
        PipelineConfig(
            corpus=CORPUS,
            sources=[str(bench.corpus)],
            model=str(base),
            root=root,
            stages=PipelineStages(train_compressor=True),
            compressor=TrainCompressorOptions(qa=str(bench.train_qa), out=str(OUT / "compressor"), device="cpu", **DEMO_COMPRESSOR),
            finetune=FinetuneOptions(qa=str(bench.finetune_qa), max_steps=30, learning_rate=1e-3, micro_batch_size=8, device="cpu"),
            evaluate=EvaluateOptions(eval_set=str(bench.heldout_qa), limit=240, max_new_tokens=4, batch_size=64, window=WINDOW, device="cpu"),
        )
    )
    trained, evaluation = result["train_compressor"], result["evaluate"]
    print("\n== lloco demo: LLoCO on a synthetic long-document benchmark, tiny model, CPU ==")
    print(f"benchmark: {bench.corpus.parent} ({DEMO_BENCHMARK.segments} segments of {DEMO_BENCHMARK.segment_length} tokens per document, "
          f"{DEMO_BENCHMARK.fields} facts, {DEMO_BENCHMARK.values} values: chance {DEMO_BENCHMARK.chance:.1%})")
    print(f"compressor: {trained['checkpoint']} (trained from {base}: {trained['steps']} steps, loss {trained['first_loss']} -> {trained['last_loss']}"
          f"{', reused' if trained['reused'] else ''})")
    print(f"adapter:   {result['finetune'].get('adapter_uri') or result['finetune'].get('adapter_key')}")
    print(f"report:    {evaluation['out']}/report.md and plot.png ({evaluation['examples']} held-out questions, decoder window {WINDOW})\n")
    print(markdown_table(evaluation))
    print(
        "\nScore = exact answer (QA-F1 on a one-word answer). A hidden-64, 2-layer model on synthetic records shows that the method works:\n"
        "summary vectors carry the facts of every segment into a decoder window too short for the raw text. It is not the paper's 7B result.\n"
        f"The raw-text baselines get what the {WINDOW}-position window leaves after the prompt: truncation keeps the document's two ends,\n"
        "retrieval finds no whole segment that fits (so it equals no context); the compressor was trained to answer from summaries, not raw text.\n"
        f"Done in {time.perf_counter() - started:.0f} s."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
