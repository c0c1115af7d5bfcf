"""lloco export --corpus NAME --out FILE.parquet [--root URL] [--encoder-key KEY]"""

from __future__ import annotations

import argparse
from typing import Any

from lloco_core.config import CorpusConfig

from ._options import add_store_options, config_values


def run(args: argparse.Namespace) -> dict[str, Any]:
    config = CorpusConfig(**config_values(args, CorpusConfig))
    from lloco_core.store.embeddings import export
    from lloco_core.store.storage import Store

    return export(Store.from_config(config), config.corpus, args.out, args.encoder_key, config.endpoint_url)


def describe(result: dict[str, Any]) -> str:
    return f"{result['rows']} segments of {result['documents']} documents (encoder {result['encoder_key']}) written to {result['out']}"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help="all committed segments of a corpus in one Parquet file")
    add_store_options(parser)
    parser.add_argument("--out", required=True, metavar="FILE", help="output .parquet path or URL, written atomically (required)")
    parser.add_argument("--encoder-key", dest="encoder_key", metavar="KEY", help="which encoder's embeddings, when the corpus has several (default: the only one)")
    parser.set_defaults(handler=run)
