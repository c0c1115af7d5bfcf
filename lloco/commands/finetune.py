"""lloco finetune --corpus NAME --qa FILE_OR_URL --model PATH_OR_ID [--root URL] [--output-key KEY] [training options]

Runs in this process at world size 1 (DeepSpeed, ZeRO-2 by default; CPU accelerator with gloo when
there is no GPU). For several GPUs use the launcher: see docs/finetune.md.
"""

from __future__ import annotations

import argparse
from typing import Any

from lloco_core.training.config import FinetuneConfig

from ._options import add_config_options, add_store_options, config_values
from ._progress import Progress, ProgressBar


class FinetuneProgress:
    """Optimizer steps with steps/s and the loss; committed checkpoints as notes."""

    def __init__(self, progress: Progress, desc: str = "finetune") -> None:
        self.progress = progress
        self.desc = desc
        self.bar: ProgressBar | None = None

    def __call__(self, event: dict[str, Any]) -> None:
        if self.bar is None:
            self.bar = self.progress.bar(total=event.get("total_steps"), unit="step", desc=self.desc)
        if event["event"] == "step":
            self.bar.update(1, loss=event["loss"])
        else:
            self.bar.note(f"checkpoint committed at step {event['step']}: {event.get('uri')}", **event)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run(args: argparse.Namespace) -> dict[str, Any]:
    config = FinetuneConfig(**config_values(args, FinetuneConfig))
    from lloco_core.training.finetune import finetune

    progress = FinetuneProgress(Progress.from_args(args))
    try:
        return finetune(config, on_progress=progress)
    finally:
        progress.close()


def describe(result: dict[str, Any]) -> str:
    if result.get("reused"):
        return f"{result['corpus']}: adapter {result['adapter_key']} already finished; reused"
    return f"{result['corpus']}: adapter {result['adapter_key']} after {result['steps']} steps, loss {result['first_loss']} -> {result['last_loss']}, {result['tokens_per_s']:,.0f} tokens/s"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("finetune", help="train (or reuse) the corpus's LoRA adapter on its compressed contexts")
    add_store_options(parser)
    add_config_options(parser, FinetuneConfig)
    parser.set_defaults(handler=run)
