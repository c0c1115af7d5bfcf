"""lloco compress --corpus NAME --model PATH_OR_ID [--segment-length N] [--shard-size N] [--batch-size N] [--device auto|cpu|cuda]"""

from __future__ import annotations

import argparse
import time
from typing import Any

from lloco_core.config import CompressConfig

from ._options import add_config_options, add_store_options, config_values
from ._progress import Progress, ProgressBar


class CompressProgress:
    """Documents encoded over the whole run, with documents/s and tokens/s within the current shard."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.bar: ProgressBar | None = None
        self.shard_started = time.monotonic()
        self.shard_documents = self.shard_tokens = 0

    def on_plan(self, plan: Any) -> None:
        total = sum(len(shard.documents) for shard in plan.shards)
        self.bar = self.progress.bar(total=total, unit="doc", desc=f"compress {len(plan.shards)} shards")
        self.shard_started = time.monotonic()

    def on_batch(self, documents: int, tokens: int) -> None:
        self.shard_documents += documents
        self.shard_tokens += tokens
        seconds = max(time.monotonic() - self.shard_started, 1e-9)
        if self.bar is not None:
            self.bar.update(documents, shard_docs_per_s=self.shard_documents / seconds, shard_tokens_per_s=self.shard_tokens / seconds)

    def on_shard(self, done: int, total: int, result: Any) -> None:
        if self.bar is not None:
            self.bar.update(0, shards=f"{done}/{total}")
        self.shard_started = time.monotonic()
        self.shard_documents = self.shard_tokens = 0

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run(args: argparse.Namespace) -> dict[str, Any]:
    config = CompressConfig(**config_values(args, CompressConfig))
    from lloco_core.model.compress import compress

    progress = CompressProgress(Progress.from_args(args))
    try:
        return compress(config, on_shard=progress.on_shard, on_plan=progress.on_plan, on_batch=progress.on_batch).as_dict()
    finally:
        progress.close()


def describe(result: dict[str, Any]) -> str:
    return f"{result['corpus']}: {result['documents_compressed']} documents compressed into {result['shards_committed']} shards ({result['documents_skipped']} already committed), {result['tokens_per_s']:,.0f} tokens/s, encoder {result['encoder_key']}"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("compress", help="encode uncompressed documents into committed embedding shards")
    add_store_options(parser)
    add_config_options(parser, CompressConfig)
    parser.set_defaults(handler=run)
