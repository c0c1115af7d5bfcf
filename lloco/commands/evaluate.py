"""lloco evaluate --corpus NAME [EVAL_FILE] [--format auto|longbench|quality|corpus] [--dataset D] [--limit N] [--systems a,b,...]

Without EVAL_FILE the adapter's held-out questions are evaluated. A benchmark's contexts go into
their own corpus (`--eval-corpus`, default eval-<file name>), never into --corpus.
"""

from __future__ import annotations

import argparse
from typing import Any

from lloco_core.qa.config import EvaluateConfig

from ._generation import add_generation_options
from ._options import add_config_options, add_store_options, config_values, help_text
from ._progress import Progress, ProgressBar
from .compress import CompressProgress


class EvaluateProgress:
    """Answers generated over all systems (the current one named); before them, the compression
    of a benchmark's new contexts as `lloco compress` shows it."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.compress = CompressProgress(progress)
        self.bar: ProgressBar | None = None

    def compress_callbacks(self) -> dict[str, Any]:
        return {"on_plan": self.compress.on_plan, "on_batch": self.compress.on_batch, "on_shard": self.compress.on_shard}

    def __call__(self, event: dict[str, Any]) -> None:
        if self.bar is None:
            self.compress.close()
            self.bar = self.progress.bar(total=event["total"], unit="answer", desc="evaluate")
        self.bar.update(event["done"] - self.bar.done, system=event["system"])

    def close(self) -> None:
        self.compress.close()
        if self.bar is not None:
            self.bar.close()


def run(args: argparse.Namespace) -> dict[str, Any]:
    config = EvaluateConfig(**config_values(args, EvaluateConfig))
    from lloco_core.qa.evaluate import evaluate

    progress = EvaluateProgress(Progress.from_args(args))
    try:
        return evaluate(config, on_progress=progress, compress_callbacks=progress.compress_callbacks())
    finally:
        progress.close()


def describe(result: dict[str, Any]) -> str:
    scores = ", ".join(f"{name} {s['score']:.3f}" for name, s in result["systems"].items())
    return f"{result['examples']} examples{' (cached)' if result.get('cached') else ''}: {scores}; report in {result['out']}"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("evaluate", help="compare LLoCO with baselines on an eval set; writes a report under <root>/<corpus>/evals/")
    parser.add_argument("eval_set", metavar="EVAL_FILE", nargs="?", default=None, help=help_text("eval_set", EvaluateConfig.model_fields["eval_set"]))
    add_store_options(parser)
    add_generation_options(parser)
    add_config_options(parser, EvaluateConfig)
    parser.set_defaults(handler=run)
