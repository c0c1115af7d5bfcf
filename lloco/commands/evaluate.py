"""lloco evaluate --corpus NAME [EVAL_FILE] [--format auto|longbench|quality|corpus] [--dataset D] [--limit N] [--systems a,b,...]

Without EVAL_FILE the adapter's held-out questions are evaluated. A benchmark's contexts go into
their own corpus (`--eval-corpus`, default eval-<file name>), never into --corpus.
"""

from __future__ import annotations

import argparse
from typing import Any

from lloco_core.qa.config import ALL_SYSTEMS, EvaluateConfig

from ._generation import add_generation_options, config_fields
from ._options import add_store_options, store_fields


def run(args: argparse.Namespace) -> dict[str, Any]:
    from lloco_core.qa.evaluate import evaluate

    options = config_fields(args, EvaluateConfig.model_fields)
    if args.systems:
        options["systems"] = [s.strip() for s in args.systems.split(",") if s.strip()]
    options.update(store_fields(args))
    return evaluate(EvaluateConfig(**options))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("evaluate", help="compare LLoCO with baselines on an eval set; writes a report under <root>/<corpus>/evals/")
    parser.add_argument("eval_set", metavar="EVAL_FILE", nargs="?", help="LongBench/QuALITY JSONL, or a corpus QA JSONL (lines with doc_id); default: the adapter's held-out questions")
    add_store_options(parser)
    parser.add_argument("--eval-corpus", dest="eval_corpus", help="corpus for a benchmark's contexts (default: eval-<file name>; never --corpus)")
    parser.add_argument("--format", choices=["auto", "longbench", "quality", "corpus"])
    parser.add_argument("--dataset", help="LongBench dataset when records lack a `dataset` field")
    parser.add_argument("--limit", type=int, help="first N examples only")
    parser.add_argument("--systems", help=f"comma-separated subset of {','.join(ALL_SYSTEMS)}")
    parser.add_argument("--top-k", dest="top_k", type=int, help="raw-text retrieval baseline: most segments kept (default: as many as fit the window)")
    parser.add_argument("--force", action="store_true", default=None, help="recompute even if this eval key has a report")
    add_generation_options(parser)
    parser.set_defaults(handler=run)
