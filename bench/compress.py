"""Row (a): compression throughput against the bare one-document loop, side by side in one run.

The bare loop is the official LLoCO way: one document, one segment, one forward pass at a time,
token ids already in memory. lloco's side is the whole `compress` (plan, read the documents,
tokenize, encode in batches, write Parquet, commit) on a freshly ingested store. Each repeat runs
both, in alternating order; the ratio is the median of the per-repeat ratios. Utilisation: the
model FLOPs of the passes (linear maps plus causal attention, as MFU counts them; the linear
maps alone in the note) over the fp32 matmul peak measured in the same process.

    .venv/bin/python bench/compress.py [--quick] [--repeats 3] [--layers 4 --hidden 512]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from bench.common import Goal, PeakMeter, Row, bench_model, emit, forward_flops, interleave, linear_flops_per_position, median_spread, ratio_row, timed, write_corpus
from lloco_core.config import CompressConfig, IngestConfig
from lloco_core.model.compress import cached_compressor, compress, encoder_settings
from lloco_core.model.segments import segment_document
from lloco_core.store.documents import ingest

GOAL_RATIO, GOAL_UTIL = Goal(">=", 0.95), Goal(">=", 0.50)


@torch.inference_mode()
def bare_loop(model, documents: list[list[list[int]]]) -> tuple[float, float, float]:
    """One document at a time, one segment at a time: [softprompt ; tokens ; summary tokens].
    Returns (seconds, model FLOPs, linear-map FLOPs) of the passes."""
    summary = model.embed_summary.weight
    flops = linear = 0.0
    start = time.perf_counter()
    for segments in documents:
        softprompt = summary.new_zeros(0, summary.shape[1])
        for ids in segments:
            x = torch.cat([softprompt, model.get_input_embeddings()(torch.tensor(ids)), summary])[None]
            hidden = model.model(inputs_embeds=x, use_cache=False).last_hidden_state[0]
            softprompt = torch.cat([softprompt, hidden[-summary.shape[0]:]])
            flops += forward_flops(model.config, x.shape[1])
            linear += x.shape[1] * linear_flops_per_position(model.config)
    return time.perf_counter() - start, flops, linear


def measure(work: Path, quick: bool = False, repeats: int | None = None, hidden: int = 512, layers: int = 4) -> list[Row]:
    """Rows a: tok/s ratio and utilisation, long and short documents. `work`: a scratch folder."""
    repeats = repeats or (1 if quick else 5)
    if quick:
        hidden, layers, segment_length, summary_length = 64, 2, 256, 8
        kinds = {"long": (2, 700), "short": (8, 60)}  # documents, words (~1.2 tokens a word)
    else:  # ~5-10 s a side on a quiet machine: short pairs, so a burst of load rarely splits one
        segment_length, summary_length = 1536, 50
        kinds = {"long": (4, 5200), "short": (80, 170)}  # ~6k and ~200 tokens
    model_dir = bench_model(work, hidden, layers, segment_length, summary_length)
    torch.set_num_threads(os.cpu_count() or 1)
    peak = PeakMeter(512 if quick else 2048)
    runs = {}
    for kind, (n_docs, n_words) in kinds.items():
        source = write_corpus(Path(tempfile.mkdtemp(prefix=f"compress-{kind}-", dir=work)), n_docs, n_words, 0 if kind == "long" else 1000)
        runs[kind] = side_by_side(kind, source, model_dir, repeats, peak, work)
    rows = []
    for kind, run in runs.items():
        long = kind == "long"
        per_rate = run.flops / 1e9 / peak.value / run.tokens  # utilisation at 1 token/s
        util, spread = median_spread([v * per_rate for v in run.values["lloco"]])
        bare_util = median_spread([v * per_rate for v in run.values["bare loop"]])[0]
        cpu_ratio = median_spread([c / b for b, c in zip(run.cpu["bare loop"], run.cpu["lloco"])])[0]
        threads = torch.get_num_threads()  # utilisation of the CPU time the process got: what a busy machine leaves of the wall-time figure
        cpu_util = {side: median_spread([v * per_rate * threads for v in run.cpu[side]])[0] for side in run.cpu}
        rows += [
            ratio_row("a", f"compress {kind} docs (~{run.tokens // run.documents:,} tok), tok/s", run.values, "bare loop", "lloco", higher_is_better=True,
                      unit_label="tok/s", goal=GOAL_RATIO if long else None,
                      note=f"{run.documents} documents a run; per CPU second (steadier when the machine is busy): {cpu_ratio:.2f}x"
                      + ("" if long else "; the GPU goal (batched >= 3x one-at-a-time) is measured by bench/gpu.sh")),
            Row("a", f"utilisation, {kind} docs (model FLOPs / matmul peak)", f"bare loop {bare_util:.0%}", f"lloco {util:.0%}", util, "%", spread, repeats,
                GOAL_UTIL if long else None, f"model FLOPs = linear maps + causal attention (MFU as PaLM counts it); the linear maps alone: {util * run.linear / run.flops:.0%}; "
                f"fp32 matmul peak {peak.value:,.0f} GFLOP/s on {threads} threads (the best of samples taken before every repeat); "
                f"per CPU second it got: lloco {cpu_util['lloco']:.0%}, bare loop {cpu_util['bare loop']:.0%}"),
        ]
    return rows


@dataclass
class SideBySide:
    values: dict[str, list[float]]  # tok/s per repeat, "bare loop" and "lloco"
    cpu: dict[str, list[float]]  # tokens per CPU second (all threads) per repeat: steadier than wall time on a busy machine
    tokens: int
    documents: int
    flops: float  # model FLOPs of all passes (the same work on both sides)
    linear: float  # the linear maps' share of them


def side_by_side(kind: str, source: Path, model_dir: Path, repeats: int, peak: PeakMeter, work: Path) -> SideBySide:
    """The bare loop and the whole compress on one corpus, interleaved; the matmul peak sampled before each repeat."""
    config = CompressConfig(corpus=kind, model=str(model_dir), device="cpu", batch_size=8, shard_size=64)
    compressor = cached_compressor(encoder_settings(config), "cpu")  # loaded once, as a worker would
    texts = [p.read_text() for p in sorted(source.iterdir())]
    docs = [[s.token_ids for s in segment_document(compressor.tokenizer, t, compressor.default_segment_length())] for t in texts]
    tokens = sum(len(s) for d in docs for s in d)
    bare_loop(compressor.model, docs[:1])  # warm-up
    work_flops: list[tuple[float, float]] = []
    roots = iter(Path(tempfile.mkdtemp(prefix=f"store-{kind}-{r}-", dir=work)) for r in range(repeats))

    cpu: dict[str, list[float]] = {"bare loop": [], "lloco": []}

    def bare() -> float:
        peak.sample()
        start = time.process_time()
        seconds, flops, linear = bare_loop(compressor.model, docs)
        cpu["bare loop"].append(tokens / (time.process_time() - start))
        work_flops.append((flops, linear))
        return tokens / seconds

    def lloco() -> float:
        root = str(next(roots))
        ingest(IngestConfig(corpus=kind, source=str(source), root=root))
        summary: list = []
        start = time.process_time()
        seconds = timed(lambda: summary.append(compress(config.model_copy(update={"root": root}))))
        cpu["lloco"].append(tokens / (time.process_time() - start))
        assert summary[0].tokens == tokens, (summary[0].tokens, tokens)
        return tokens / seconds

    values = interleave({"bare loop": bare, "lloco": lloco}, repeats)
    return SideBySide(values, cpu, tokens, len(docs), *work_flops[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a tiny model and corpus: a smoke run, not figures")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved repeats per side (default 3; 1 with --quick)")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=512)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lloco-bench-") as tmp:
        emit("compress", measure(Path(tmp), args.quick, args.repeats, args.hidden, args.layers))


if __name__ == "__main__":
    main()
