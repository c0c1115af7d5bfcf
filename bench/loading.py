"""Checkpoint loading time: the published layout (bf16 weights in `pytorch_model-0000k-of-00002.bin`
shards + index, as princeton-nlp/AutoCompressor-Llama-2-7b-6k ships) against the same weights in
one `model.safetensors`, both through `load_autocompressor` (into float32 as compress on CPU, or `--dtype bfloat16`),
measured side by side in one run: the layouts alternate, each `--repeats` times, and the medians
are compared. Also timed: the tensor check alone (`check_checkpoint`: headers only), the cost
lloco adds before every load.

    .venv/bin/python bench/loading.py [--hidden 1536 --layers 8 --vocab 32000 --repeats 5]

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from lloco_core.model.autocompressor import check_checkpoint, load_autocompressor, load_config  # noqa: E402
from lloco_core.model.tiny import build_tiny_compressor, resave_checkpoint  # noqa: E402


def timed(fn) -> float:  # noqa: ANN001 - a thunk
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def weight_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.suffix in {".bin", ".safetensors"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=1536)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32", help="dtype loaded into (float32: compress on CPU; bfloat16: GPU, no cast)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)

    with tempfile.TemporaryDirectory(prefix="lloco-bench-loading-") as tmp:
        work = Path(tmp)
        source = build_tiny_compressor(
            work / "fp32", hidden_size=args.hidden, num_layers=args.layers, num_heads=args.heads,
            intermediate_size=int(2.75 * args.hidden), summary_length=50, vocab_size=args.vocab,
        )
        layouts = {
            "safetensors": resave_checkpoint(source, work / "safetensors", "safetensors", dtype=torch.bfloat16),
            "sharded_bin": resave_checkpoint(source, work / "sharded-bin", "sharded-bin", dtype=torch.bfloat16),
        }
        config = load_config(str(source))
        seconds: dict[str, list[float]] = {name: [] for name in layouts}
        check: dict[str, list[float]] = {name: [] for name in layouts}
        load_autocompressor(str(layouts["safetensors"]), dtype=dtype)  # warm imports and the page cache
        for _ in range(args.repeats):
            for name, folder in layouts.items():
                check[name].append(timed(lambda folder=folder: check_checkpoint(str(folder), config)))
                seconds[name].append(timed(lambda folder=folder: load_autocompressor(str(folder), dtype=dtype)))
        median = {name: statistics.median(values) for name, values in seconds.items()}
        print(json.dumps({
            "bench": "loading",
            "params_m": round(sum(p.numel() for p in load_autocompressor(str(layouts["safetensors"]), dtype=torch.bfloat16).parameters()) / 1e6, 1),
            "weights_mb": {name: round(weight_bytes(folder) / 2**20, 1) for name, folder in layouts.items()},
            "stored_dtype": "bfloat16",
            "loaded_dtype": args.dtype,
            "repeats": args.repeats,
            "threads": args.threads,
            "load_s": {name: [round(v, 3) for v in values] for name, values in seconds.items()},
            "median_load_s": {name: round(v, 3) for name, v in median.items()},
            "ratio_sharded_bin_over_safetensors": round(median["sharded_bin"] / median["safetensors"], 2),
            "median_check_s": {name: round(statistics.median(v), 4) for name, v in check.items()},
        }))


if __name__ == "__main__":
    main()
