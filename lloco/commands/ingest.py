"""lloco ingest SOURCE --corpus NAME [--root URL]"""

from __future__ import annotations

import argparse
from typing import Any

from lloco_core.config import IngestConfig

from ._options import add_positional, add_store_options, config_values


def run(args: argparse.Namespace) -> dict[str, Any]:
    config = IngestConfig(**config_values(args, IngestConfig))
    from lloco_core.store.documents import ingest

    return ingest(config).as_dict()


def describe(result: dict[str, Any]) -> str:
    skipped = f", {len(result['skipped'])} skipped (listed in the JSON)" if result["skipped"] else ""
    return f"{result['corpus']}: {result['documents_added']} documents added, {result['documents_updated']} updated, {result['documents_unchanged']} unchanged{skipped}"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("ingest", help="add new and changed documents from a folder, JSONL, Parquet or URL", description="Add new and changed documents to a corpus. A folder's .txt/.md files become documents whose doc_id is the file's path inside the folder without its extension (notes/a.txt -> notes/a); JSONL lines are {\"id\" (or \"doc_id\"), \"text\", \"metadata\"?}.")
    add_positional(parser, IngestConfig, "source", "SOURCE")
    add_store_options(parser)
    parser.set_defaults(handler=run)
