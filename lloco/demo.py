"""`make demo`: the whole pipeline on the bundled sample corpus with a tiny model.

Everything is local: the store under ./demo_output/store, Prefect in its ephemeral mode, a tiny
random-init AutoCompressor built once into ./demo_output/model. The tiny model shows the machinery
(caching, shards, adapters, reports), not answer quality.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "lloco_core" / "data"
OUT = Path(os.environ.get("LLOCO_DEMO_DIR", "demo_output")).resolve()


def tiny_model() -> Path:
    """Build the demo checkpoint once; later demos reuse it (and so every cached stage)."""
    from lloco_core.model.tiny import build_tiny_compressor

    folder = OUT / "model"
    if not (folder / "model.safetensors").exists():
        build_tiny_compressor(folder, hidden_size=64, num_layers=2, summary_length=4, segment_length=64)
    return folder


def main() -> int:
    from lloco_core.logs import quiet_third_party

    quiet_third_party()  # before torch/transformers/deepspeed load: no third-party noise (LLOCO_VERBOSE=1 keeps it)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    OUT.mkdir(parents=True, exist_ok=True)
    model = tiny_model()
    root = str(OUT / "store")
    from flows.pipeline import EvaluateOptions, FinetuneOptions, PipelineConfig, pipeline_flow
    from lloco_core.qa.report import markdown_table

    qa = str(DATA / "sample_qa.jsonl")
    result = pipeline_flow(
        PipelineConfig(
            corpus="sample",
            sources=[str(DATA / "sample_corpus")],
            model=str(model),
            root=root,
            finetune=FinetuneOptions(qa=qa, epochs=1),
            evaluate=EvaluateOptions(eval_set=qa, limit=12, max_new_tokens=8),
        )
    )
    evaluation = result["evaluate"]
    print("\n== lloco demo: the tiny random model shows the machinery, not answer quality ==")
    print(f"model:   {model}\nstore:   {root}")
    print(f"shards:  {result['compress']['store']}")
    print(f"adapter: {result['finetune'].get('adapter_uri') or result['finetune'].get('adapter_key')}")
    print(f"report:  {evaluation['out']}/report.md\n")
    print(markdown_table(evaluation))
    return 0


if __name__ == "__main__":
    sys.exit(main())
