"""lloco verify --corpus NAME [--root URL] [--repair]

Checks every committed file of a corpus against its commit record and reports per file; exit
status 0 when clean, 1 when problems remain (with --repair: when some could not be repaired).
"""

from __future__ import annotations

import argparse
from typing import Any

from lloco_core.config import VerifyConfig

from ._options import add_config_options, add_store_options, config_values


def run(args: argparse.Namespace) -> dict[str, Any]:
    config = VerifyConfig(**config_values(args, VerifyConfig))
    from lloco_core.store.storage import Store
    from lloco_core.store.verify import verify

    return verify(Store.from_config(config), config.corpus, repair=config.repair).as_dict()


def describe(result: dict[str, Any]) -> str:
    problems = [f"{f['path']}: {f['problem']}" + (f" ({f['repair']})" if "repair" in f else "") for f in result["files"] if f["status"] != "ok"]
    head = f"{result['checked']} files checked, {result['problems']} problem(s), {result['repaired']} repaired"
    return head + "".join(f"\n  {line}" for line in problems)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("verify", help="check every committed file of a corpus against its checksum (exit 1 on problems)")
    add_store_options(parser)
    add_config_options(parser, VerifyConfig, ["repair"])
    parser.set_defaults(handler=run)
