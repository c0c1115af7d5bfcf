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


def command_names() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_"))


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """All subcommands, or just `only`: importing one command's module spares the others' imports (torch)."""
    parser = argparse.ArgumentParser(prog="lloco", description="LLoCO: compress long documents offline, finetune per corpus, answer from summary embeddings.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in [only] if only else command_names():
        importlib.import_module(f"{commands.__name__}.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    argv = sys.argv[1:] if argv is None else argv
    only = argv[0] if argv and argv[0] in command_names() else None
    args = build_parser(only).parse_args(argv)
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
    return int(result.get("exit_status", 0)) if isinstance(result, dict) else 0  # e.g. verify: 1 = problems found


if __name__ == "__main__":
    sys.exit(main())
