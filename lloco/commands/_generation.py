"""Options shared by `ask` and `evaluate`: model, adapter, decoding, retrieval (GenerationConfig)."""

from __future__ import annotations

import argparse

from lloco_core.qa.config import GenerationConfig

from ._options import STORE_FIELDS, add_config_options, config_fields  # noqa: F401  (config_fields: used by command modules)

GENERATION_FLAGS = {"do_sample": "--sample"}


def add_generation_options(parser: argparse.ArgumentParser) -> None:
    """Every GenerationConfig field as an option; --adapter-key and --no-adapter exclude each other."""
    adapter = parser.add_mutually_exclusive_group()
    add_config_options(adapter, GenerationConfig, ["adapter_key", "no_adapter"])  # type: ignore[arg-type]
    add_config_options(parser, GenerationConfig, exclude=STORE_FIELDS, flags=GENERATION_FLAGS)
