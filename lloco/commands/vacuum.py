"""lloco vacuum --corpus NAME [--root URL] [--older-than 1h] [--dry-run]

Removes temporary files and data files no commit record references, once older than the grace
period; never anything committed or in flight.
"""

from __future__ import annotations

import argparse
from typing import Any

from lloco_core.config import VacuumConfig

from ._options import add_config_options, add_store_options, config_values


def run(args: argparse.Namespace) -> dict[str, Any]:
    config = VacuumConfig(**config_values(args, VacuumConfig))
    from lloco_core.store.storage import Store
    from lloco_core.store.vacuum import parse_duration, vacuum

    return vacuum(Store.from_config(config), config.corpus, parse_duration(config.older_than), config.dry_run).as_dict()


def describe(result: dict[str, Any]) -> str:
    verb = "would remove" if result["dry_run"] else "removed"
    return f"{verb} {result['files_removed']} file(s) older than {result['older_than_s']:.0f} s; kept {result['kept_young']} younger"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("vacuum", help="remove temporary and unreferenced files older than a grace period")
    add_store_options(parser)
    add_config_options(parser, VacuumConfig, ["older_than", "dry_run"])
    parser.set_defaults(handler=run)
