"""lloco finetune --corpus NAME --qa FILE_OR_URL --model PATH_OR_ID [--root URL] [--output-key KEY] [training options]

Runs in this process at world size 1 (DeepSpeed, ZeRO-2 by default; CPU accelerator with gloo when
there is no GPU). For several GPUs use the launcher: see docs/finetune.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from lloco_core.training.config import FinetuneConfig

from ._options import add_store_options, store_fields

INT_OPTIONS = ("epochs", "max_steps", "micro_batch_size", "gradient_accumulation_steps", "lora_r", "lora_alpha", "checkpoint_every", "keep_checkpoints", "max_segments", "seed", "zero_stage")
FLOAT_OPTIONS = ("learning_rate", "lora_dropout", "warmup_ratio", "holdout")


def progress(event: dict[str, Any]) -> None:
    """Progress on stderr as `lloco-progress {json}` lines (the Prefect task parses them)."""
    print("lloco-progress " + json.dumps(event), file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from lloco_core.training.finetune import finetune

    options = {k: v for k, v in vars(args).items() if k in FinetuneConfig.model_fields and v is not None}
    options.update(store_fields(args))
    return finetune(FinetuneConfig(**options), on_progress=progress)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("finetune", help="train (or reuse) the corpus's LoRA adapter on its compressed contexts")
    add_store_options(parser)
    parser.add_argument("--qa", required=True, help="QA JSONL file or URL (id, doc_id, question, answers[, options, task])")
    parser.add_argument("--model", required=True, help="base AutoCompressor checkpoint folder or hub id (the one that compressed the corpus)")
    parser.add_argument("--output-key", dest="output_key", help="adapter folder name (default: content-derived adapter key)")
    parser.add_argument("--encoder-key", dest="encoder_key", help="embeddings to use (default: the corpus's only encoder)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--prompt-set", dest="prompt_set", choices=["lloco-paper", "lloco-v1"], help=FinetuneConfig.model_fields["prompt_set"].description)
    for name in INT_OPTIONS:
        parser.add_argument("--" + name.replace("_", "-"), dest=name, type=int, help=FinetuneConfig.model_fields[name].description)
    for name in FLOAT_OPTIONS:
        parser.add_argument("--" + name.replace("_", "-"), dest=name, type=float, help=FinetuneConfig.model_fields[name].description)
    parser.set_defaults(handler=run)
