"""`lloco`: one entry point, one subcommand per module in `lloco.commands`.

A command module defines `register(subparsers)` and `run(args) -> dict`, optionally
`describe(result) -> str` (the human line shown on a terminal) and `RETRY = False` (no retries on
storage errors, e.g. for a long-running server). Module tops import only argparse and the
torch-free configs, so parsing, `--help` and usage errors answer at once; `run()` validates its
config first and imports the heavy libraries after.

Every command ends by printing one JSON object on the last line of stdout (on a terminal, a short
human line comes first). Errors are one line on stderr: exit 2 for bad input and storage errors,
1 for anything unexpected; `--debug` adds the traceback. Storage and network errors are retried
with the same policy as the Prefect tasks (lloco_core.store.retry). A failed command leaves no
folder behind that it created.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import pkgutil
import sys
import time
import traceback
from collections.abc import Callable
from types import ModuleType
from typing import Any, NoReturn

from . import commands
from .commands._progress import MODES

Handler = Callable[[argparse.Namespace], dict[str, Any]]
EXIT_INPUT = 2
EXIT_INTERNAL = 1
EXIT_INTERRUPTED = 130
OUTPUT_OPTIONS = ("verbose", "debug", "progress")


class GaveUp(Exception):
    """A storage error that outlasted every retry; the cause is the last error."""

    def __init__(self, retries: int, seconds: float) -> None:
        super().__init__(f"gave up after {retries} retries over {seconds:.0f} s")


class ArgumentParser(argparse.ArgumentParser):
    """Usage errors as one line (exit 2) that points at --help, instead of usage + error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_INPUT, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def command_names() -> list[str]:
    """Subcommand names: one per public module of lloco.commands (`train_compressor` -> `train-compressor`)."""
    return sorted(m.name.replace("_", "-") for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_"))


def command_module(name: str) -> ModuleType:
    return importlib.import_module(f"{commands.__name__}.{name.replace('-', '_')}")


def add_output_options(parser: argparse.ArgumentParser) -> None:
    """--verbose, --debug, --progress on a parser (skipping any the command defined itself).
    Defaults are suppressed so `lloco --debug ask …` and `lloco ask --debug …` both work."""
    taken = parser._option_string_actions
    if "--verbose" not in taken:
        flags = [f for f in ("-v", "--verbose") if f not in taken]
        parser.add_argument(*flags, action="store_true", default=argparse.SUPPRESS, help="show third-party warnings and logs (default: off)")
    if "--debug" not in taken:
        parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="--verbose, plus debug logs and a traceback on errors (default: off)")
    if "--progress" not in taken:
        parser.add_argument(
            "--progress", choices=MODES, default=argparse.SUPPRESS,
            help="bar: a progress bar; json: `lloco-progress {json}` lines on stderr; auto: a bar on a terminal, json lines otherwise (default: auto)",
        )


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """All subcommands, or just `only` (importing one command module spares the others)."""
    parser = ArgumentParser(prog="lloco", description="LLoCO: compress long documents offline, finetune per corpus, answer from summary embeddings.")
    add_output_options(parser)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=ArgumentParser)
    for name in [only] if only else command_names():
        before = set(subparsers.choices)
        command_module(name).register(subparsers)
        for added in set(subparsers.choices) - before:
            add_output_options(subparsers.choices[added])
    return parser


def _command_in(argv: list[str]) -> str | None:
    first = next((a for a in argv if not a.startswith("-")), None)
    return first if first in command_names() else None


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def option_name(parser: argparse.ArgumentParser | None, field: str) -> str:
    """How the user spelled a config field: its flag (--segment-length) or positional (question)."""
    for action in parser._actions if parser else []:
        if action.dest == field:
            return action.option_strings[-1] if action.option_strings else str(action.metavar or field).lower()
    return field


def validation_message(error: Any, parser: argparse.ArgumentParser | None) -> str:
    """A pydantic ValidationError as one line naming the options: `--shard-size 0: Input should be ≥ 1`."""
    parts = []
    for item in error.errors():
        loc = [str(p) for p in item.get("loc", ())]
        message = item["msg"].removeprefix("Value error, ")
        if not loc:  # a check across options (a model validator): its message names them
            parts.append(message)
            continue
        where = option_name(parser, loc[0]) + "".join(f".{p}" for p in loc[1:])
        value = item.get("input")
        shown = f" {value!r}" if isinstance(value, (str, int, float)) and not isinstance(value, bool) else ""
        parts.append(f"{where}{shown}: {message}")
    return "invalid options: " + "; ".join(parts)


def _is_storage_error(error: BaseException) -> bool:
    from lloco_core.store.retry import is_transient

    modules = {cls.__module__.split(".")[0] for cls in type(error).__mro__}
    return isinstance(error, OSError) or is_transient(error) or bool(modules & {"botocore", "aiobotocore", "aiohttp", "s3fs", "fsspec"})


def _refused_hint(error: BaseException, root: str | None) -> str:
    """Which store refused access and what to check: s3fs often says only `Forbidden`."""
    if not isinstance(error, PermissionError) or not root or "://" not in root:
        return ""
    return f" (access to {root} refused: check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and the endpoint)"


def report_error(command: str, error: BaseException, parser: argparse.ArgumentParser | None, debug: bool, root: str | None = None) -> int:
    """One line on stderr (the traceback first with --debug); returns the exit status."""
    from pydantic import ValidationError

    from lloco_core.errors import LlocoError

    if debug:
        traceback.print_exception(error)
    if isinstance(error, KeyboardInterrupt):
        message, status = "interrupted", EXIT_INTERRUPTED
    elif isinstance(error, ValidationError):
        message, status = validation_message(error, parser), EXIT_INPUT
    elif isinstance(error, GaveUp) and error.__cause__ is not None:
        message, status = f"storage error, {error}: {type(error.__cause__).__name__}: {error.__cause__}", EXIT_INPUT
    elif isinstance(error, LlocoError):
        message, status = f"error: {error}", EXIT_INPUT
    elif _is_storage_error(error):
        message, status = f"storage error: {type(error).__name__}: {error}{_refused_hint(error, root)}", EXIT_INPUT
    elif isinstance(error, ValueError):
        message, status = f"invalid input: {error}", EXIT_INPUT
    else:
        message, status = f"internal error: {type(error).__name__}: {error}", EXIT_INTERNAL
    hint = " (run again with --debug for the traceback)" if status == EXIT_INTERNAL and not debug else ""
    print(f"lloco {command}: {_one_line(message)}{hint}", file=sys.stderr, flush=True)
    return status


class CreatedFolders:
    """Local folders a command may create (its store root, its output's folder): if the command
    fails, the ones that did not exist before are removed again, provided they hold no file."""

    def __init__(self, paths: list[str]) -> None:
        self.tops = [top for path in paths if (top := self._first_missing(path)) is not None]

    @staticmethod
    def _first_missing(path: str) -> str | None:
        if path.startswith("file://"):
            path = path.removeprefix("file://")
        elif "://" in path:
            return None
        path = os.path.abspath(os.path.expanduser(path))
        if os.path.exists(path):
            return None
        while not os.path.exists(os.path.dirname(path)):
            path = os.path.dirname(path)
        return path

    def remove_empty(self) -> None:
        for top in self.tops:
            if not os.path.isdir(top) or any(files for _, _, files in os.walk(top)):
                continue
            for folder, _, _ in sorted(os.walk(top), key=lambda entry: -len(entry[0])):
                try:
                    os.rmdir(folder)  # only ever an empty folder: a file written meanwhile keeps it
                except OSError:
                    break


def _paths_created_by(args: argparse.Namespace) -> list[str]:
    paths = []
    if hasattr(args, "root"):
        from lloco_core.config import default_root

        paths.append(args.root or default_root())
    out = getattr(args, "out", None)
    if isinstance(out, str) and out:
        paths.append(os.path.dirname(os.path.abspath(out)) if "://" not in out else out)
    return paths


def _run(args: argparse.Namespace, module: ModuleType) -> dict[str, Any]:
    handler: Handler = args.handler
    if not getattr(module, "RETRY", True):
        return handler(args)
    from lloco_core.store.retry import RETRY_DELAYS_S, call_with_retries

    retries: list[int] = []
    started = time.monotonic()

    def announce(error: BaseException, attempt: int, delay: float) -> None:
        retries.append(attempt)
        print(
            f"lloco {args.command}: storage error ({type(error).__name__}: {_one_line(error)[:200]}); retry {attempt}/{len(RETRY_DELAYS_S)} in {delay:.1f} s",
            file=sys.stderr, flush=True,
        )

    try:
        return call_with_retries(lambda: handler(args), on_retry=announce)
    except Exception as error:
        if retries and _is_storage_error(error):
            raise GaveUp(len(retries), time.monotonic() - started) from error
        raise


def human_line(module: ModuleType, command: str, result: dict[str, Any], seconds: float) -> str:
    """The command's own summary sentence (`describe(result)`), else a generic one."""
    describe = getattr(module, "describe", None)
    try:
        line = describe(result) if describe else None
    except Exception:  # a summary sentence must never fail a command that succeeded
        line = None
    return f"lloco {command}: {line or 'done'} ({seconds:.1f} s)"


def _configure_logging(verbose: bool, debug: bool) -> None:
    from lloco_core.logs import quiet_third_party

    quiet_third_party(verbose or debug)
    if debug or verbose:
        logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, format="%(levelname)s %(name)s: %(message)s")


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command_in(argv))
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # reported by the command's own parser, so the message names the command
        subparsers.choices[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    for name, default in zip(OUTPUT_OPTIONS, (False, False, "auto")):
        if not hasattr(args, name):
            setattr(args, name, default)
    _configure_logging(args.verbose, args.debug)
    module = sys.modules[args.handler.__module__]
    created = CreatedFolders(_paths_created_by(args))
    started = time.monotonic()
    try:
        result = _run(args, module)
    except Exception as error:
        created.remove_empty()
        return report_error(args.command, error, subparsers.choices.get(args.command), args.debug, getattr(args, "root", None))
    except KeyboardInterrupt as error:
        created.remove_empty()
        return report_error(args.command, error, None, args.debug)
    if sys.stdout.isatty():
        print(human_line(module, args.command, result, time.monotonic() - started), flush=True)
    sys.stdout.flush()
    print(json.dumps(result, default=str), flush=True)
    return int(result.get("exit_status", 0)) if isinstance(result, dict) else 0  # e.g. verify: 1 = problems found


if __name__ == "__main__":
    sys.exit(main())
