"""lloco ask --corpus NAME [--doc ID] "question" [--model PATH] [--adapter-key KEY | --no-adapter] [--max-new-tokens N]"""

from __future__ import annotations

import argparse
from typing import Any

from lloco_core.qa.answer import Answerer, Question
from lloco_core.qa.config import AskConfig
from lloco_core.qa.serving import export_prompt_embeds

from ._generation import add_generation_options, config_fields
from ._options import add_store_options, store_fields


def run(args: argparse.Namespace) -> dict[str, Any]:
    options = config_fields(args, AskConfig.model_fields)
    options.update(store_fields(args))
    config = AskConfig(**options)
    answerer = Answerer(config)
    result = answerer.answer([Question(config.question, config.doc_id, config.task, config.options)])[0].as_dict()
    result.pop("token_ids")
    if args.export_embeds:
        result["export"] = export_prompt_embeds(config, answerer=answerer)
    return result


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("ask", help="answer a question from a compressed corpus (summary vectors + the corpus adapter)")
    parser.add_argument("question", help="the question")
    add_store_options(parser)
    parser.add_argument("--doc", dest="doc_id", help="document id to answer from (default: retrieve over the whole corpus)")
    parser.add_argument("--task", choices=["qa", "multiple_choice", "query_summary"], help="prompt template (default qa)")
    parser.add_argument("--option", dest="options", action="append", help="an answer option (repeat; multiple_choice)")
    parser.add_argument("--export-embeds", dest="export_embeds", action="store_true", help="also write the request's prompt embeddings for vLLM beside the adapter (docs/serving.md)")
    add_generation_options(parser)
    parser.set_defaults(handler=run)
