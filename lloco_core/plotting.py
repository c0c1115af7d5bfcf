"""PNG figures for reports (loss curves, score vs tokens), rendered headless with matplotlib's Agg."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def png_figure(size: tuple[float, float], dpi: int, out: list[bytes]) -> Iterator[Any]:
    """Yield a fresh Axes; on exit append the figure's PNG bytes to `out` and free the figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size, dpi=dpi)
    try:
        yield ax
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        out.append(buffer.getvalue())
    finally:
        plt.close(fig)


def loss_curve_png(curve: list[dict[str, Any]], title: str) -> bytes:
    """A training run's loss per optimizer step: the total, and each objective's own when a
    compressor run mixed both (its curve points carry `qa_loss` and `lm_loss`)."""
    png: list[bytes] = []
    names = [("loss", "total")]
    if curve and all(name in curve[0] for name in ("qa_loss", "lm_loss")):
        names += [("qa_loss", "compress-then-answer"), ("lm_loss", "AutoCompressor (next token)")]
    with png_figure((6, 3.5), 100, png) as ax:
        for name, label in names:
            ax.plot([p["step"] for p in curve], [p[name] for p in curve], label=label, linewidth=1, marker="." if len(curve) < 60 else None)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("training loss")
        ax.set_yscale("log")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        if len(names) > 1:
            ax.legend(fontsize=8)
    return png[0]
