"""Progress of a long command: a tqdm bar on a terminal, structured lines otherwise.

`--progress auto` (the default) draws a bar when stderr is a terminal and writes
`lloco-progress {json}` lines (at most one a second, and the last) when it is not, so logs and
wrappers get machine-readable progress; `--progress bar|json|none` forces one. Library code only
calls back (`on_batch`, `on_progress`); this module decides how that looks. tqdm is imported
only when a bar is drawn.
"""

from __future__ import annotations

import json
import sys
import time
from typing import IO, Any

MODES = ("auto", "bar", "json", "none")
PREFIX = "lloco-progress "


class ProgressBar:
    """One unit of work with a known total: update with deltas and a few live figures."""

    def __init__(self, mode: str, stream: IO[str], total: int | None, unit: str, desc: str, interval: float) -> None:
        self.mode, self.stream, self.total, self.unit, self.desc, self.interval = mode, stream, total, unit, desc, interval
        self.done = 0
        self.figures: dict[str, Any] = {}
        self._last_line: float | None = None  # the first update always makes a line
        self._unsent = False
        self._bar: Any = None
        if mode == "bar":
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit=unit, desc=desc, file=stream, dynamic_ncols=True, leave=True, smoothing=0.1)

    def update(self, n: int = 1, **figures: Any) -> None:
        self.done += n
        self.figures.update(figures)
        self._unsent = True
        if self._bar is not None:
            self._bar.set_postfix({_label(k): _short(v) for k, v in self.figures.items()}, refresh=False)
            self._bar.update(n)
        elif self.mode == "json" and (self._last_line is None or time.monotonic() - self._last_line >= self.interval):
            self._line()

    def note(self, message: str, **fields: Any) -> None:
        """A one-off event (a checkpoint committed): a line above the bar, or a JSON line."""
        if self._bar is not None:
            self._bar.write(message, file=self.stream)
        elif self.mode == "json":
            _emit(self.stream, {"task": self.desc, **fields, "message": message})

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.mode == "json":
            if self._unsent:
                self._line()
            self.mode = "closed"

    def _line(self) -> None:
        self._last_line = time.monotonic()
        self._unsent = False
        figures = {k: round(v, 3) if isinstance(v, float) else v for k, v in self.figures.items()}
        _emit(self.stream, {"task": self.desc, "done": self.done, "total": self.total, "unit": self.unit, **figures})

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _label(key: str) -> str:
    """`shard_tokens_per_s` -> `shard tokens/s` (JSON keys stay identifiers, the bar reads well)."""
    return key.replace("_per_s", "/s").replace("_", " ")


def _short(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return value


def _emit(stream: IO[str], event: dict[str, Any]) -> None:
    stream.write(PREFIX + json.dumps(event, default=str) + "\n")
    stream.flush()


class Progress:
    """How this command shows progress; `bar()` starts one unit of work."""

    def __init__(self, mode: str = "auto", stream: IO[str] | None = None, interval: float = 1.0) -> None:
        self.stream = stream or sys.stderr
        if mode == "auto":
            mode = "bar" if _isatty(self.stream) else "json"
        self.mode = mode
        self.interval = interval

    @classmethod
    def from_args(cls, args: Any) -> Progress:
        return cls(getattr(args, "progress", "auto") or "auto")

    def bar(self, total: int | None, unit: str, desc: str) -> ProgressBar:
        return ProgressBar(self.mode, self.stream, total, unit, desc, self.interval)


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
