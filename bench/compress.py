"""Compression throughput, measured against baselines in the same run (these machines are noisy).

Prints: the fp32 matmul peak of this machine; tokens/s of a bare one-document-at-a-time encoder
loop (the official LLoCO way); tokens/s of the whole `compress` (tokenize, encode, write Parquet,
commit) on long (~6k tokens) and short (~200 tokens) documents; linear-layer FLOPs utilisation
against the peak; and the Prefect `compress` flow's wall time over the bare library call.

    .venv/bin/python bench/compress.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from lloco_core.config import CompressConfig, IngestConfig  # noqa: E402
from lloco_core.model.compress import cached_compressor, compress, encoder_settings  # noqa: E402
from lloco_core.model.segments import segment_document  # noqa: E402
from lloco_core.model.tiny import build_tiny_compressor  # noqa: E402
from lloco_core.store.documents import ingest  # noqa: E402
from tests.conftest import make_text  # noqa: E402


def matmul_peak(n: int = 2048, repeats: int = 10) -> float:
    """Best fp32 GFLOP/s of a square matmul: the ceiling the encoder's linear layers work against."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return best


def linear_flops_per_position(config) -> float:
    h, i, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    kv = h * config.num_key_value_heads // config.num_attention_heads
    return 2.0 * layers * (2 * h * h + 2 * h * kv + 3 * h * i)


@torch.inference_mode()
def bare_loop(model, documents: list[list[list[int]]]) -> tuple[float, int, int]:
    """One document at a time, one segment at a time: [softprompt ; tokens ; summary tokens]."""
    summary = model.embed_summary.weight
    tokens = positions = 0
    start = time.perf_counter()
    for segments in documents:
        softprompt = summary.new_zeros(0, summary.shape[1])
        for ids in segments:
            x = torch.cat([softprompt, model.get_input_embeddings()(torch.tensor(ids)), summary])[None]
            hidden = model.model(inputs_embeds=x, use_cache=False).last_hidden_state[0]
            softprompt = torch.cat([softprompt, hidden[-summary.shape[0]:]])
            tokens += len(ids)
            positions += x.shape[1]
    return time.perf_counter() - start, tokens, positions


def write_corpus(folder: Path, n_docs: int, n_words: int, seed: int) -> None:
    folder.mkdir(parents=True)
    for d in range(n_docs):
        (folder / f"doc{d:04d}.txt").write_text(make_text(seed + d, n_words))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller workloads (a smoke run, noisier figures)")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=512)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lloco-bench-"))
    model_dir = build_tiny_compressor(
        work / "model", hidden_size=args.hidden, num_layers=args.layers, num_heads=8, summary_length=50, segment_length=1536,
        texts=[make_text(s, 2000) for s in range(10)], vocab_size=2000, max_position_embeddings=8192,
    )
    n_long, n_short = (3, 40) if args.quick else (8, 160)
    write_corpus(work / "long", n_long, 5200, 0)  # ~6k tokens each
    write_corpus(work / "short", n_short, 170, 1000)  # ~200 tokens each
    torch.set_num_threads(os.cpu_count() or 1)
    peak = matmul_peak()
    print(f"threads: {torch.get_num_threads()}  fp32 matmul peak: {peak:,.1f} GFLOP/s")

    def run_compress(kind: str, root: str) -> dict:
        ingest(IngestConfig(corpus=kind, source=str(work / kind), root=root))
        return compress(CompressConfig(corpus=kind, model=str(model_dir), root=root, device="cpu", batch_size=8, shard_size=64))

    settings = encoder_settings(CompressConfig(corpus="x", model=str(model_dir), device="cpu"))
    compressor = cached_compressor(settings, "cpu")  # loaded once, as a worker would
    config = compressor.model.config
    per_position = linear_flops_per_position(config)
    rows = []
    for kind in ("long", "short"):
        texts = [p.read_text() for p in sorted((work / kind).iterdir())]
        docs = [[s.token_ids for s in segment_document(compressor.tokenizer, t, 1536)] for t in texts]
        bare_loop(compressor.model, docs[:1])  # warm-up
        seconds, tokens, positions = bare_loop(compressor.model, docs)
        bare_tps = tokens / seconds
        util = positions * per_position / seconds / 1e9 / peak
        summary = run_compress(kind, str(work / f"store-{kind}"))
        lloco_tps = summary.tokens / summary.seconds
        lloco_util = positions * per_position / summary.seconds / 1e9 / peak
        rows.append((kind, tokens / len(docs), bare_tps, util, lloco_tps, lloco_util))
    print(f"\n{'documents':>10} {'tok/doc':>8} {'bare loop tok/s':>16} {'util':>6} {'lloco compress tok/s':>21} {'util':>6} {'ratio':>6}")
    for kind, per_doc, bare_tps, util, lloco_tps, lloco_util in rows:
        print(f"{kind:>10} {per_doc:8.0f} {bare_tps:16,.0f} {util:6.1%} {lloco_tps:21,.0f} {lloco_util:6.1%} {lloco_tps / bare_tps:6.2f}x")

    # Prefect overhead: the same work through the flow (server already up) vs the library call.
    from prefect import flow

    from flows.compress import compress_flow

    @flow
    def warm_up() -> None:
        """Start the ephemeral API once, so its start-up is not charged to the flow."""

    warm_up()
    library_seconds = run_compress("long", str(work / "store-library")).seconds
    ingest(IngestConfig(corpus="long", source=str(work / "long"), root=str(work / "store-flow")))
    start = time.perf_counter()
    compress_flow(CompressConfig(corpus="long", model=str(model_dir), root=str(work / "store-flow"), device="cpu", batch_size=8, shard_size=64))
    flow_seconds = time.perf_counter() - start
    extra = flow_seconds - library_seconds
    print(f"\nPrefect compress flow: {flow_seconds:.2f} s vs library {library_seconds:.2f} s: overhead {flow_seconds / library_seconds - 1:+.1%} ({extra:+.2f} s for one flow run of 1 shard task; a fixed cost per run, so its share falls as runs grow)")


if __name__ == "__main__":
    main()
