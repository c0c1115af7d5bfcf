"""lloco train-compressor --base PATH_OR_ID --corpus NAME --out FOLDER [--qa FILE] [--summary-length N] [--segment-length N] [--max-steps N] …

Turns a base LLaMA causal LM into an AutoCompressor trained on the corpus's documents (and on
compress-then-answer over --qa), in this process at world size 1 (DeepSpeed; CPU accelerator with
gloo when there is no GPU). The checkpoint is committed under <root>/<corpus>/compressors/<key>/ and
copied to --out; a repeat with the same inputs is a cache hit, a killed run resumes.
"""

from __future__ import annotations

import argparse
from typing import Any

from lloco_core.training.compressor_config import CompressorConfig

from ._options import add_config_options, add_store_options, config_values
from ._progress import Progress
from .finetune import FinetuneProgress


def run(args: argparse.Namespace) -> dict[str, Any]:
    config = CompressorConfig(**config_values(args, CompressorConfig))
    from lloco_core.training.compressor import train_compressor

    progress = FinetuneProgress(Progress.from_args(args), desc="train-compressor")
    try:
        return train_compressor(config, on_progress=progress)
    finally:
        progress.close()


def describe(result: dict[str, Any]) -> str:
    if result.get("reused"):
        return f"{result['corpus']}: compressor {result['compressor_key']} already trained; reused -> {result['checkpoint']}"
    return f"{result['corpus']}: compressor {result['compressor_key']} after {result['steps']} steps, loss {result['first_loss']} -> {result['last_loss']}, {result['tokens_per_s']:,.0f} tokens/s -> {result['checkpoint']}"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train-compressor", help="turn a base LLaMA model into an AutoCompressor trained on the corpus (and a QA file)")
    add_store_options(parser)
    add_config_options(parser, CompressorConfig, flags={"base": "--base"})
    parser.set_defaults(handler=run)
