"""`lloco`: one entry point, one subcommand per module in `lloco.commands`.

Each subcommand ends by printing one JSON object on the last line of stdout; errors go to stderr
with a non-zero exit. Single-stage commands call the library directly (no Prefect start-up cost).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import sys
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from lloco_core.errors import LlocoError

from . import commands

Handler = Callable[[argparse.Namespace], dict[str, Any]]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lloco", description="LLoCO: compress long documents offline, finetune per corpus, answer from summary embeddings.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if module_info.name.startswith("_"):
            continue
        importlib.import_module(f"{commands.__name__}.{module_info.name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        result = handler(args)
    except ValidationError as err:
        print(f"lloco {args.command}: invalid options:\n{err}", file=sys.stderr)
        return 2
    except LlocoError as err:
        print(f"lloco {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # storage: refused credentials, unreachable endpoint, missing bucket
        print(f"lloco {args.command}: storage error: {type(err).__name__}: {err}", file=sys.stderr)
        return 2
    sys.stdout.flush()
    print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
