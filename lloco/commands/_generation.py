"""Options shared by `ask` and `evaluate`: model, adapter, decoding, retrieval."""

from __future__ import annotations

import argparse
from typing import Any


def add_generation_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="base AutoCompressor checkpoint (default: the adapter's base model)")
    adapter = parser.add_mutually_exclusive_group()
    adapter.add_argument("--adapter-key", dest="adapter_key", help="adapter under <root>/<corpus>/adapters/ (default: the newest finished one)")
    adapter.add_argument("--no-adapter", dest="no_adapter", action="store_true", default=None, help="use the base decoder only")
    parser.add_argument("--encoder-key", dest="encoder_key", help="embeddings to read (default: the adapter's, else the only one)")
    parser.add_argument("--max-new-tokens", dest="max_new_tokens", type=int, help="most tokens per answer (default 64)")
    parser.add_argument("--batch-size", dest="batch_size", type=int, help="questions generated together")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--dtype", choices=["auto", "float16", "bfloat16", "float32"], help="decoder dtype (default auto: bfloat16 on CUDA, float32 on CPU; the paper's inference ran float16)")
    parser.add_argument("--window", type=int, help="decoder context length for raw-text baselines and the vLLM command (default: the model's)")
    parser.add_argument("--max-segments", dest="max_segments", type=int, help="most segments of a named document read, from its start (default 80, as LLoCO)")
    parser.add_argument("--retriever", choices=["bm25", "dense"])
    parser.add_argument("--dense-model", dest="dense_model", help="sentence-transformers folder for --retriever dense")
    parser.add_argument("--sample", dest="do_sample", action="store_true", default=None, help="sample instead of greedy decoding")
    parser.add_argument("--temperature", type=float)


def config_fields(args: argparse.Namespace, model_fields: dict[str, Any]) -> dict[str, Any]:
    """The options the user gave that the config knows, so config defaults apply otherwise."""
    return {k: v for k, v in vars(args).items() if k in model_fields and v is not None}
