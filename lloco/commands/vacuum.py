"""lloco vacuum --corpus NAME [--root URL] [--older-than 1h] [--dry-run]

Removes temporary files and data files no commit record references, once older than the grace
period; never anything committed or in flight.
"""

from __future__ import annotations

import argparse
from typing import Any

from lloco_core.config import CorpusConfig

from ._options import add_store_options, config_values


def run(args: argparse.Namespace) -> dict[str, Any]:
    from lloco_core.store.storage import Store
    from lloco_core.store.vacuum import parse_duration, vacuum

    config = CorpusConfig(**config_values(args, CorpusConfig))
    return vacuum(Store.from_config(config), config.corpus, parse_duration(args.older_than), args.dry_run).as_dict()


def describe(result: dict[str, Any]) -> str:
    verb = "would remove" if result["dry_run"] else "removed"
    return f"{verb} {result['files_removed']} file(s) older than {result['older_than_s']:.0f} s; kept {result['kept_young']} younger"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("vacuum", help="remove temporary and unreferenced files older than a grace period")
    add_store_options(parser)
    parser.add_argument("--older-than", dest="older_than", default="1h", help="grace period: only files older than this go (e.g. 30m, 1h, 2d; default 1h)")
    parser.add_argument("--dry-run", dest="dry_run", action="store_true", help="list what would be removed, remove nothing")
    parser.set_defaults(handler=run)
