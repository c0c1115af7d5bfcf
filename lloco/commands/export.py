"""lloco export --corpus NAME --out FILE.parquet [--root URL] [--encoder-key KEY]"""

from __future__ import annotations

import argparse
from typing import Any

from lloco_core.config import CorpusConfig
from lloco_core.store.embeddings import export
from lloco_core.store.storage import Store

from ._options import add_store_options, store_fields


def run(args: argparse.Namespace) -> dict[str, Any]:
    config = CorpusConfig(**store_fields(args))
    store = Store.from_config(config)
    return export(store, config.corpus, args.out, args.encoder_key, config.endpoint_url)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help="all committed segments of a corpus in one Parquet file")
    add_store_options(parser)
    parser.add_argument("--out", required=True, help="output .parquet path or URL")
    parser.add_argument("--encoder-key", help="which encoder's embeddings, when the corpus has several")
    parser.set_defaults(handler=run)
