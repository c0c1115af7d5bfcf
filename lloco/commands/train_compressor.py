"""lloco train-compressor --base PATH_OR_ID --corpus NAME --out FOLDER [--qa FILE] [--summary-length N] [--segment-length N] [--max-steps N] …

Turns a base LLaMA causal LM into an AutoCompressor trained on the corpus's documents (and on
compress-then-answer over --qa), in this process at world size 1 (DeepSpeed; CPU accelerator with
gloo when there is no GPU). The checkpoint is committed under <root>/<corpus>/compressors/<key>/ and
copied to --out; a repeat with the same inputs is a cache hit, a killed run resumes.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from lloco_core.training.compressor_config import CompressorConfig

from ._options import add_store_options, store_fields

INT_OPTIONS = (
    "summary_length", "segment_length", "max_steps", "max_segments", "gradient_segments", "lm_substeps", "lm_sequences", "qa_documents",
    "questions_per_document", "max_answer_tokens", "lora_r", "lora_alpha", "warmup_steps", "seed", "zero_stage", "checkpoint_every", "keep_checkpoints",
)  # fmt: skip
FLOAT_OPTIONS = ("learning_rate", "lm_weight", "qa_weight", "adam_beta2", "weight_decay", "max_grad_norm", "lora_dropout")


def progress(event: dict[str, Any]) -> None:
    """Progress on stderr as `lloco-progress {json}` lines (the Prefect task parses them)."""
    print("lloco-progress " + json.dumps(event), file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from lloco_core.training.compressor import train_compressor

    options = {k: v for k, v in vars(args).items() if k in CompressorConfig.model_fields and v is not None}
    options.update(store_fields(args))
    return train_compressor(CompressorConfig(**options), on_progress=progress)


def register(subparsers: argparse._SubParsersAction) -> None:
    fields = CompressorConfig.model_fields
    parser = subparsers.add_parser("train-compressor", help="turn a base LLaMA model into an AutoCompressor trained on the corpus (and a QA file)")
    add_store_options(parser)
    parser.add_argument("--base", required=True, help=fields["base"].description)
    parser.add_argument("--out", help=fields["out"].description)
    parser.add_argument("--qa", help=fields["qa"].description)
    parser.add_argument("--output-key", dest="output_key", help=fields["output_key"].description)
    parser.add_argument("--revision", help=fields["revision"].description)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help=fields["device"].description)
    parser.add_argument("--tuning", choices=["full", "lora"], help=fields["tuning"].description)
    parser.add_argument("--lr-scheduler", dest="lr_scheduler", choices=["cosine", "linear", "constant"], help=fields["lr_scheduler"].description)
    parser.add_argument("--accumulate-summary", dest="accumulate_summary", action=argparse.BooleanOptionalAction, help=fields["accumulate_summary"].description)
    for name in INT_OPTIONS:
        parser.add_argument("--" + name.replace("_", "-"), dest=name, type=int, help=fields[name].description)
    for name in FLOAT_OPTIONS:
        parser.add_argument("--" + name.replace("_", "-"), dest=name, type=float, help=fields[name].description)
    parser.set_defaults(handler=run)
