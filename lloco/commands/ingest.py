"""lloco ingest SOURCE --corpus NAME [--root URL]"""

from __future__ import annotations

import argparse
from typing import Any

from lloco_core.config import IngestConfig
from lloco_core.store.documents import ingest

from ._options import add_store_options, store_fields


def run(args: argparse.Namespace) -> dict[str, Any]:
    return ingest(IngestConfig(source=args.source, **store_fields(args))).as_dict()


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("ingest", help="add new and changed documents from a folder, JSONL, Parquet or URL")
    parser.add_argument("source", metavar="SOURCE", help="folder of .txt/.md, .jsonl, .parquet, or an fsspec URL")
    add_store_options(parser)
    parser.set_defaults(handler=run)
