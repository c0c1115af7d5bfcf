"""Row (g): peak memory of `compress` on one long document, at several lengths up to 100k tokens.

What may grow with the document: the accumulated summaries (the softprompt: 50 vectors per
1536-token segment) and the activations of the widest forward pass, whose input is that
softprompt plus one segment. What must not: anything per document token beyond its text and ids
(all hidden states, a dense attention matrix over the document, copies of every segment's input).

Per length, in this process: a fresh store with the one document ingested, memory released to
the OS, the kernel's peak-RSS mark reset (/proc/self/clear_refs), then the whole `compress`
(read, tokenize, encode, write, commit) with the model already loaded; peak = VmHWM - RSS before.
The baseline is the peak of the bare model's forward pass alone at the same widest input. The
figure is the slope of lloco's peak over document length, against the slope of the baseline (what
the growing softprompt alone costs).

    .venv/bin/python bench/memory.py [--quick] [--tokens 12500 25000 50000 100000]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from bench.common import Row, bench_model, emit, peak_mb, release_memory, reset_peak, rss_mb
from lloco_core.config import CompressConfig, IngestConfig
from lloco_core.model.compress import cached_compressor, compress, encoder_settings
from lloco_core.store.documents import ingest
from tests.conftest import make_text


def peak_of(fn) -> float:
    """MB the call adds at its peak over what was resident before it."""
    release_memory()
    before = rss_mb()
    if not reset_peak():
        raise RuntimeError("cannot reset the peak-RSS mark (/proc/self/clear_refs): peak memory is not measurable here")
    fn()
    return peak_mb() - before


@torch.inference_mode()
def widest_forward(model, positions: int) -> None:
    """One forward pass of the body over `positions` input vectors, as compress's last step runs it."""
    model.model(inputs_embeds=torch.randn(1, positions, model.config.hidden_size), use_cache=False)


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope."""
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def measure(work: Path, quick: bool = False, tokens: list[int] | None = None) -> list[Row]:
    hidden, layers, segment, summary = (64, 2, 256, 8) if quick else (512, 4, 1536, 50)
    tokens = tokens or ([1000, 2000, 4000] if quick else [12500, 25000, 50000, 100000])
    model_dir = bench_model(work, hidden, layers, segment, summary, max_positions=8192)
    config = CompressConfig(corpus="m", model=str(model_dir), device="cpu")
    compressor = cached_compressor(encoder_settings(config), "cpu")
    torch.set_num_threads(2)
    points = []
    for n in tokens:
        words = make_text(7, n).split(" ")  # ~1.2 tokens a word: cut to n tokens below
        text = " ".join(words[: int(n / 1.15)])
        ids = compressor.tokenizer(text, add_special_tokens=False)["input_ids"]
        source = work / f"memory-{n}"
        source.mkdir(parents=True, exist_ok=True)
        (source / "long.txt").write_text(text)
        root = str(work / f"memory-store-{n}")
        ingest(IngestConfig(corpus="m", source=str(source), root=root))
        segments = math.ceil(len(ids) / segment)
        widest = (segments - 1) * summary + segment + summary
        widest_forward(compressor.model, widest)  # warm-up at this width
        bare = peak_of(lambda w=widest: widest_forward(compressor.model, w))
        lloco = peak_of(lambda r=root: compress(CompressConfig(corpus="m", model=str(model_dir), root=r, device="cpu")))
        summaries_mb = segments * summary * hidden * 4 / 2**20
        points.append((len(ids), widest, bare, lloco, summaries_mb))
    xs = [p[0] / 1e4 for p in points]
    lloco_slope, bare_slope = slope(xs, [p[3] for p in points]), slope(xs, [p[2] for p in points])
    summaries_slope = slope(xs, [p[4] for p in points])
    detail = "; ".join(f"{p[0]:,} tok: {p[3]:.0f} MB (forward at {p[1]:,} positions {p[2]:.0f} MB)" for p in points)
    last = points[-1]
    return [
        Row("g", f"compress peak memory, {last[0] / 1000:.0f}k-token document", f"widest forward {last[2]:.0f} MB", f"compress {last[3]:.0f} MB", last[3], "MB",
            note=f"peak over resident before the call, model loaded; {detail}"),
        Row("g", "peak growth per 10k document tokens", f"widest forward {bare_slope:.1f} MB", f"compress {lloco_slope:.1f} MB", lloco_slope, "MB",
            note=f"least-squares slope over {len(points)} lengths; the widest forward grows only through the softprompt; "
                 f"the summaries themselves add {summaries_slope:.2f} MB per 10k tokens"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tokens", type=int, nargs="+", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lloco-bench-") as tmp:
        emit("memory", measure(Path(tmp), args.quick, args.tokens))


if __name__ == "__main__":
    main()
