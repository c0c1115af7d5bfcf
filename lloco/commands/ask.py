"""lloco ask --corpus NAME [--doc ID] "question" [--task NAME] [--top-k K] [--model PATH] [--adapter-key KEY | --no-adapter] [--verbose]"""

from __future__ import annotations

import argparse
from typing import Any

from lloco_core.qa.config import AskConfig

from ._generation import add_generation_options
from ._options import add_config_options, add_positional, add_store_options, config_values


def run(args: argparse.Namespace) -> dict[str, Any]:
    config = AskConfig(**config_values(args, AskConfig))
    from lloco_core.qa.answer import ask_answerer, ask_question
    from lloco_core.qa.serving import export_prompt_embeds

    answerer = ask_answerer(config)
    result = answerer.answer([ask_question(config)])[0].as_dict(verbose=bool(args.verbose))
    if args.export_embeds:
        result["export"] = export_prompt_embeds(config, answerer=answerer)
    return result


def describe(result: dict[str, Any]) -> str:
    answer = " ".join(str(result["answer"]).split())
    answer = answer if len(answer) <= 100 else answer[:99] + "…"
    documents = len(result.get("documents") or [])
    return f"{answer!r} (from {documents} document{'' if documents == 1 else 's'}, {result['positions']['total']} decoder positions, {result['latency_s']:.2f} s)"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("ask", help="answer a question from a compressed corpus (summary vectors + the corpus adapter)")
    add_positional(parser, AskConfig, "question", "QUESTION")
    add_store_options(parser)
    add_config_options(
        parser, AskConfig, ["doc_id", "task", "options", "top_k"], flags={"doc_id": "--doc", "options": "--option"},
        doc_id={"metavar": "ID", "help": "document to answer from: the decoder reads its first --max-segments segments (default: retrieve --top-k segments over the whole corpus)"},
        options={"action": "append", "type": str, "metavar": "TEXT", "help": "an answer option; repeat for each (quality / multiple_choice) (default: none)"},
    )
    parser.add_argument("--export-embeds", dest="export_embeds", action="store_true", help="also write the exact tensor the decoder reads (for vLLM's prompt_embeds) beside the adapter; the summary says where, docs/serving.md (default: off)")
    parser.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="add every segment read, the prompt ids and the generated token ids to the JSON summary, and show third-party warnings and logs (default: off)")
    add_generation_options(parser)
    parser.set_defaults(handler=run)
