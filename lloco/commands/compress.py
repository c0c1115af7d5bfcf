"""lloco compress --corpus NAME --model PATH_OR_ID [--segment-length N] [--shard-size N] [--batch-size N] [--device auto|cpu|cuda]"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from lloco_core.config import CompressConfig
from lloco_core.model.compress import ShardResult, compress

from ._options import add_store_options, store_fields


def progress(done: int, total: int, result: ShardResult) -> None:
    rate = result.tokens / result.seconds if result.seconds else 0.0
    print(f"shard {done}/{total} {result.name}: {result.documents} documents, {result.segments} segments, {rate:,.0f} tokens/s", file=sys.stderr)


def run(args: argparse.Namespace) -> dict[str, Any]:
    options = {k: v for k, v in vars(args).items() if k in CompressConfig.model_fields and v is not None}
    options.update(store_fields(args))
    return compress(CompressConfig(**options), on_shard=progress).as_dict()


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("compress", help="encode uncompressed documents into committed embedding shards")
    add_store_options(parser)
    parser.add_argument("--model", required=True, help="AutoCompressor checkpoint folder or hub id")
    parser.add_argument("--segment-length", type=int, dest="segment_length")
    parser.add_argument("--shard-size", type=int, dest="shard_size", help="documents per shard (unit of commit)")
    parser.add_argument("--batch-size", type=int, dest="batch_size", help="at most this many documents per forward pass")
    parser.add_argument("--batch-positions", type=int, dest="batch_positions", help="at most this many input positions per forward pass (default 4096 on CPU, 65536 on GPU)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--stored-dtype", choices=["auto", "float32", "float16", "bfloat16"], dest="stored_dtype")
    parser.add_argument("--revision", help="hub revision")
    parser.set_defaults(handler=run)
