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
