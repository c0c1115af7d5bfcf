"""What every bench shares: side-by-side timing, one result row, the table, peak memory, the matmul peak.

These machines are noisy (shared cores), so a ratio is only meaningful when its two sides are
measured in the same run, interleaved: `interleave` alternates the order every repeat (A B, B A,
...) so a slow drift of the machine falls on both sides, and a row reports the median of the
per-repeat ratios with their spread.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


@dataclass(frozen=True)
class Goal:
    """A figure's target: `op` is ">=" or "<="; `value` in the row's unit."""

    op: str
    value: float

    def met(self, figure: float) -> bool:
        return figure >= self.value if self.op == ">=" else figure <= self.value


@dataclass
class Row:
    """One line of the table: what was measured, both sides, the figure the goal is checked on."""

    row: str  # the letter: a..h
    measure: str
    baseline: str  # the baseline side, formatted (e.g. "bare loop 3,212 tok/s")
    candidate: str  # lloco's side, formatted
    figure: float | None  # the number the goal is about (a ratio, a share, seconds, MB); None: not measured
    unit: str = "x"  # "x" ratio, "%" share (figure in 0..1), "s", "MB", "MB/10k tok"
    spread: tuple[float, float] | None = None  # min and max of the per-repeat figures
    repeats: int = 1
    goal: Goal | None = None
    note: str = ""

    @property
    def met(self) -> bool | None:
        return None if self.goal is None or self.figure is None else self.goal.met(self.figure)

    def as_dict(self) -> dict:
        return {**asdict(self), "met": self.met}


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "x":
        return f"{value:.2f}x" if value < 100 else f"{value:.0f}x"
    if unit == "%":
        return f"{value:.0%}"
    if unit == "s":
        return f"{value:.3g} s"
    return f"{value:.3g} {unit}"


def median_spread(values: Sequence[float]) -> tuple[float, tuple[float, float]]:
    return statistics.median(values), (min(values), max(values))


def interleave(sides: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Call each side `repeats` times, alternating the order every repeat; returns their values."""
    names = list(sides)
    out: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            out[name].append(sides[name]())
    return out


def ratio_row(row: str, measure: str, values: dict[str, list[float]], baseline: str, candidate: str, *, higher_is_better: bool,
              unit_label: str, goal: Goal | None = None, note: str = "", scale: float = 1.0, digits: str = ",.0f") -> Row:
    """A row from interleaved values: figure = median over repeats of candidate/baseline (rates) or
    baseline/candidate (times), so > 1 always means lloco is ahead."""
    base, cand = values[baseline], values[candidate]
    ratios = [c / b if higher_is_better else b / c for b, c in zip(base, cand)]
    figure, spread = median_spread(ratios)
    show = lambda name, vals: f"{name} {format(statistics.median(vals) * scale, digits)} {unit_label}"
    return Row(row, measure, show(baseline, base), show(candidate, cand), figure, "x", spread, len(ratios), goal, note)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def timed_generate(model, embeds, new_tokens: int, pad_id: int) -> float:
    """Seconds for prefill + exactly `new_tokens` greedy tokens with the KV cache (EOS cannot stop it early)."""
    import torch

    inputs = embeds[None]  # one example: no padding (lloco_core's pad_batch would be a no-op)
    mask = torch.ones(inputs.shape[:2], dtype=torch.long, device=embeds.device)
    cuda = embeds.device.type == "cuda"
    with torch.inference_mode():
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = model.generate(inputs_embeds=inputs, attention_mask=mask, max_new_tokens=new_tokens,
                             min_new_tokens=new_tokens, do_sample=False, use_cache=True, pad_token_id=pad_id)
        if cuda:
            torch.cuda.synchronize()
    assert out.shape[1] == new_tokens, out.shape
    return time.perf_counter() - start


def matmul_peak(n: int = 2048, repeats: int = 10) -> float:
    """Best fp32 GFLOP/s of a square matmul at this process's thread count: the ceiling the
    encoder's linear layers work against."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return best


class PeakMeter:
    """The matmul peak as the best rate seen: sampled again before each repeat, because a busy
    moment at the start would understate the ceiling and overstate every utilisation."""

    def __init__(self, n: int = 2048, repeats: int = 3) -> None:
        self.n, self.repeats, self.value = n, repeats, 0.0

    def sample(self) -> float:
        self.value = max(self.value, matmul_peak(self.n, self.repeats))
        return self.value


def linear_flops_per_position(config) -> float:
    """Multiply-adds x 2 of the decoder layers' linear maps for one input position (attention's
    score/value products excluded): the work that runs at matmul speed."""
    h, i, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    kv = h * config.num_key_value_heads // config.num_attention_heads
    return 2.0 * layers * (2 * h * h + 2 * h * kv + 3 * h * i)


def forward_flops(config, width: int) -> float:
    """Model FLOPs of one encoder pass over `width` positions, as MFU counts them (PaLM, app. B):
    the linear maps plus causal attention's score and value products (2 * width^2 * hidden a layer)."""
    return width * linear_flops_per_position(config) + 2.0 * config.num_hidden_layers * width * width * config.hidden_size


def write_corpus(folder: Path, n_docs: int, n_words: int, seed: int) -> Path:
    """`n_docs` text files of deterministic pseudo-prose (~1.2 tokens a word with the bench tokenizer)."""
    from tests.conftest import make_text

    folder.mkdir(parents=True, exist_ok=True)
    for d in range(n_docs):
        (folder / f"doc{d:05d}.txt").write_text(make_text(seed + d, n_words))
    return folder


_models: dict[tuple, Path] = {}


def bench_model(work: Path, hidden: int = 512, layers: int = 4, segment_length: int = 1536, summary_length: int = 50, max_positions: int = 8192) -> Path:
    """A random-init AutoCompressor checkpoint (BPE tokenizer trained on the bench prose), built
    once per process and shape, saved in the published format so the real loading code reads it."""
    from lloco_core.model.tiny import build_tiny_compressor
    from tests.conftest import make_text

    key = (str(work), hidden, layers, segment_length, summary_length, max_positions)
    if key not in _models:
        _models[key] = build_tiny_compressor(
            work / f"model-h{hidden}-l{layers}-s{segment_length}-k{summary_length}-p{max_positions}", hidden_size=hidden, num_layers=layers,
            num_heads=max(1, hidden // 64), summary_length=summary_length, segment_length=segment_length,
            texts=[make_text(s, 2000) for s in range(10)], vocab_size=2000, max_position_embeddings=max_positions,
        )
    return _models[key]


# peak memory ------------------------------------------------------------------------------------
def _status_kb(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    return int(match.group(1)) if match else 0


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS, so RSS is what is really held."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def rss_mb() -> float:
    return _status_kb("VmRSS") / 1024


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (Linux >= 4.0: write 5 to clear_refs); False if refused."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_mb() -> float:
    return _status_kb("VmHWM") / 1024


# output -----------------------------------------------------------------------------------------
COLUMNS = (("row", 3), ("measure", 52), ("baseline", 30), ("lloco", 30), ("result", 9), ("spread (n)", 20), ("goal", 9), ("met", 4))


def line(r: Row) -> str:
    """One row as a line of the table (no note)."""
    spread = f"{fmt(r.spread[0], r.unit)}-{fmt(r.spread[1], r.unit)} ({r.repeats})" if r.spread else (f"({r.repeats})" if r.figure is not None else "")
    goal = f"{r.goal.op}{fmt(r.goal.value, r.unit)}" if r.goal else ""
    met = {None: "", True: "yes", False: "NO"}[r.met]
    cells = [r.row, r.measure, r.baseline, r.candidate, fmt(r.figure, r.unit), spread, goal, met]
    return "  ".join(c.ljust(w) for c, (_, w) in zip(cells, COLUMNS)).rstrip()


def table(rows: Sequence[Row]) -> str:
    """The one table: a header, one line per row, notes under it."""
    lines = ["  ".join(name.ljust(width) for name, width in COLUMNS).rstrip()]
    lines.append("  ".join("-" * width for _, width in COLUMNS))
    notes = []
    for r in rows:
        lines.append(line(r))
        if r.note:
            notes.append(f"({r.row}) {r.measure}: {r.note}")
    return "\n".join(lines + ([""] + notes if notes else []))


def emit(bench: str, rows: Sequence[Row], extra: dict | None = None) -> None:
    """A bench run alone: its table, then one JSON line (machine-readable, the last line)."""
    print(table(rows), flush=True)
    print(json.dumps({"bench": bench, "rows": [r.as_dict() for r in rows], **(extra or {})}), flush=True)
