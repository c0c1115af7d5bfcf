"""One compressor trained per test session on the synthetic benchmark (the `trained_compressor`
fixture in conftest.py): a tiny random LLaMA base turned into an AutoCompressor by
`train_compressor` on compress-then-answer, bounded by steps and seeded, so CI gets the same model.

The finetune, resume and quality tests all start from it: a random-init model cannot show
learning (its output head caps every logit near +-1), a trained compressor can.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lloco_core.config import IngestConfig
from lloco_core.qa.synthetic import DEMO_BENCHMARK, DEMO_COMPRESSOR, BenchmarkFiles, SyntheticConfig, build_base_model, write_benchmark
from lloco_core.store.documents import ingest
from lloco_core.training.compressor import train_compressor
from lloco_core.training.compressor_config import CompressorConfig

CORPUS = "synthetic"
BENCHMARK = DEMO_BENCHMARK
TRAINING = {**DEMO_COMPRESSOR, "checkpoint_every": 1000, "device": "cpu"}
"""The demo's recipe (lloco_core/qa/synthetic.py): the tests check what `make demo` shows."""


@dataclass(frozen=True)
class TrainedCompressor:
    work: Path
    root: str  # store holding the ingested synthetic corpus and the committed compressor
    bench: BenchmarkFiles
    base: Path  # the random-init LLaMA it was trained from
    checkpoint: Path  # the trained AutoCompressor (published format)
    config: CompressorConfig
    summary: dict[str, Any]


def synthetic_corpus(work: Path, config: SyntheticConfig = BENCHMARK) -> tuple[str, BenchmarkFiles, Path]:
    """Benchmark files, a base model for them, and the corpus ingested: (root, files, base)."""
    bench = write_benchmark(work / "bench", config)
    base = build_base_model(work / "base", config)
    root = str(work / "store")
    ingest(IngestConfig(root=root, corpus=CORPUS, source=str(bench.corpus)))
    return root, bench, base


@contextmanager
def one_cpu_thread() -> Iterator[None]:
    """A tiny model's ops are too small to split across threads: on a shared 2-core machine two
    intra-op threads made a training step several times slower than one (README, compressor training)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_quality_compressor(work: Path) -> TrainedCompressor:
    root, bench, base = synthetic_corpus(work)
    config = CompressorConfig(root=root, corpus=CORPUS, base=str(base), qa=str(bench.train_qa), out=str(work / "compressor"), **TRAINING)
    with one_cpu_thread():
        summary = train_compressor(config)
    return TrainedCompressor(work, root, bench, base, Path(summary["checkpoint"]), config, summary)
