"""lloco ask --corpus NAME [--doc ID] "question" [--task NAME] [--top-k K] [--model PATH] [--adapter-key KEY | --no-adapter] [--verbose]"""

from __future__ import annotations

import argparse
from typing import Any

from lloco_core.qa.config import AskConfig
from lloco_core.qa.prompts import TASKS

from ._generation import add_generation_options, config_fields
from ._options import add_store_options, store_fields


def run(args: argparse.Namespace) -> dict[str, Any]:
    from lloco_core.qa.answer import Answerer, ask_question
    from lloco_core.qa.serving import export_prompt_embeds

    options = config_fields(args, AskConfig.model_fields)
    options.update(store_fields(args))
    config = AskConfig(**options)
    answerer = Answerer(config, top_k=config.top_k)
    result = answerer.answer([ask_question(config)])[0].as_dict(verbose=bool(args.verbose))
    if args.export_embeds:
        result["export"] = export_prompt_embeds(config, answerer=answerer)
    return result


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("ask", help="answer a question from a compressed corpus (summary vectors + the corpus adapter)")
    parser.add_argument("question", help="the question")
    add_store_options(parser)
    parser.add_argument("--doc", dest="doc_id", help="document to answer from: the decoder reads its first --max-segments segments (default: retrieve --top-k segments over the whole corpus)")
    parser.add_argument("--task", choices=TASKS, help="prompt template (default qa; quality/qasper/narrativeqa/qmsum/hotpotqa are the paper's)")
    parser.add_argument("--option", dest="options", action="append", help="an answer option (repeat; quality / multiple_choice)")
    parser.add_argument("--top-k", dest="top_k", type=int, help=f"segments retrieved over the corpus when no --doc is given (default {AskConfig.model_fields['top_k'].default})")
    parser.add_argument("--export-embeds", dest="export_embeds", action="store_true", help="also write the exact tensor the decoder reads (for vLLM's prompt_embeds) beside the adapter; the summary says where (docs/serving.md)")
    parser.add_argument("--verbose", action="store_true", help="add every segment read, the prompt ids and the generated token ids to the JSON summary")
    add_generation_options(parser)
    parser.set_defaults(handler=run)
