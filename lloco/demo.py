"""`make demo`: the whole pipeline on the bundled sample corpus with a tiny model.

Everything is local: the store under ./demo_output/store, Prefect in its ephemeral mode, a tiny
random-init AutoCompressor built once into ./demo_output/model. The tiny model shows the machinery
(caching, shards, adapters, reports), not answer quality.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "lloco_core" / "data"
OUT = Path(os.environ.get("LLOCO_DEMO_DIR", "demo_output")).resolve()


def tiny_model() -> Path:
    """Build the demo checkpoint once; later demos reuse it (and so every cached stage)."""
    from lloco_core.tiny import build_tiny_compressor

    folder = OUT / "model"
    if not (folder / "model.safetensors").exists():
        build_tiny_compressor(folder, hidden_size=64, num_layers=2, summary_length=4, segment_length=64)
    return folder


def main() -> int:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    OUT.mkdir(parents=True, exist_ok=True)
    model = tiny_model()
    root = str(OUT / "store")
    try:
        from flows.pipeline import PipelineConfig, pipeline_flow
    except ImportError:
        pipeline_flow = None
    if pipeline_flow is not None:
        result = pipeline_flow(
            PipelineConfig(corpus="sample", sources=[str(DATA / "sample_corpus")], model=str(model), root=root, qa=str(DATA / "sample_qa.jsonl"))
        )
    else:
        from flows.compress import compress_flow
        from flows.ingest import ingest_flow
        from lloco_core.config import CompressConfig, IngestConfig

        result = {
            "ingest": ingest_flow(IngestConfig(corpus="sample", source=str(DATA / "sample_corpus"), root=root)),
            "compress": compress_flow(CompressConfig(corpus="sample", model=str(model), root=root)),
        }
    print("\n== lloco demo ==")
    print(f"model: {model}\nstore: {root}")
    report = result.get("report_markdown") if isinstance(result, dict) else None
    if report:
        print(report)
    print(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
