"""Options every subcommand shares, spelled once."""

from __future__ import annotations

import argparse

from lloco_core.config import default_root


def add_store_options(parser: argparse.ArgumentParser, corpus_required: bool = True) -> None:
    parser.add_argument("--corpus", required=corpus_required, help="corpus name")
    parser.add_argument("--root", default=None, help=f"store root URL (default: $LLOCO_ROOT, else {default_root()})")
    parser.add_argument("--endpoint-url", default=None, help="S3 endpoint URL (default: $AWS_ENDPOINT_URL)")


def store_fields(args: argparse.Namespace) -> dict[str, str]:
    """Only the store options the user gave, so config defaults (e.g. $LLOCO_ROOT) apply otherwise."""
    fields = {"corpus": args.corpus, "root": args.root, "endpoint_url": args.endpoint_url}
    return {k: v for k, v in fields.items() if v is not None}
