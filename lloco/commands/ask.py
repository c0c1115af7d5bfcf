"""lloco ask --corpus NAME [--doc ID] "question" [--model PATH] [--adapter-key KEY | --no-adapter] [--max-new-tokens N]"""

from __future__ import annotations

import argparse
from typing import Any

from lloco_core.qa.config import AskConfig

from ._generation import add_generation_options
from ._options import add_config_options, add_positional, add_store_options, config_values


def run(args: argparse.Namespace) -> dict[str, Any]:
    config = AskConfig(**config_values(args, AskConfig))
    from lloco_core.qa.answer import Answerer, Question
    from lloco_core.qa.serving import export_prompt_embeds

    answerer = Answerer(config)
    result = answerer.answer([Question(config.question, config.doc_id, config.task, config.options)])[0].as_dict()
    result.pop("token_ids")
    if args.export_embeds:
        result["export"] = export_prompt_embeds(config, answerer=answerer)
    return result


def describe(result: dict[str, Any]) -> str:
    answer = " ".join(str(result["answer"]).split())
    answer = answer if len(answer) <= 100 else answer[:99] + "…"
    return f"{answer!r} ({len(result['segments'])} segments read, {result['prompt_tokens']} prompt positions, {result['latency_s']:.2f} s)"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("ask", help="answer a question from a compressed corpus (summary vectors + the corpus adapter)")
    add_positional(parser, AskConfig, "question", "QUESTION")
    add_store_options(parser)
    add_config_options(parser, AskConfig, ["doc_id", "task", "options"], flags={"doc_id": "--doc", "options": "--option"}, options={"action": "append", "type": str, "metavar": "TEXT"})
    parser.add_argument("--export-embeds", dest="export_embeds", action="store_true", help="also write the request's prompt embeddings for vLLM beside the adapter, docs/serving.md (default: off)")
    add_generation_options(parser)
    parser.set_defaults(handler=run)
