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


def run(args: argparse.Namespace) -> dict[str, Any]:
    config = EvaluateConfig(**config_values(args, EvaluateConfig))
    from lloco_core.qa.evaluate import evaluate

    return evaluate(config)


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
