"""Training-checkpoint file format: lloco's pickle-free `tensor_tree` (safetensors + JSON skeleton)
against DeepSpeed's default (`torch.save`, loaded with `torch.load(weights_only=False)`), on a
state shaped like a ZeRO optimizer partition (AdamW moments per parameter, a flat fp32 partition,
param groups, scalars). Both are written and read side by side in one run, alternating, `--repeats`
times; the medians are compared. Loading includes reading every tensor once.

    .venv/bin/python bench/checkpoint_format.py [--params 64 --rows 256 --cols 1024 --repeats 5]

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

from lloco_core.training.tensor_tree import load_tree, save_tree  # noqa: E402


def optimizer_like_state(params: int, rows: int, cols: int) -> dict:
    moments = {i: {"step": torch.tensor(5.0), "exp_avg": torch.randn(rows, cols), "exp_avg_sq": torch.rand(rows, cols)} for i in range(params)}
    return {
        "optimizer_state_dict": {
            "base_optimizer_state": {"state": moments, "param_groups": [{"lr": 2e-5, "betas": (0.9, 0.999), "eps": 1e-8, "params": list(range(params))}]},
            "single_partition_of_fp32_groups": [torch.randn(params * rows * cols // 8)],
            "partition_count": [1],
        },
        "ds_version": "0.19.8",
    }


def touch(tree: object) -> float:
    """Read every tensor's bytes (safetensors maps the file lazily; torch.load reads it all)."""
    if isinstance(tree, torch.Tensor):
        return float(tree.float().sum())
    if isinstance(tree, dict):
        return sum(touch(v) for v in tree.values())
    if isinstance(tree, (list, tuple)):
        return sum(touch(v) for v in tree)
    return 0.0


def timed(fn: object, *args: object) -> float:
    started = time.perf_counter()
    fn(*args)  # type: ignore[operator]
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=int, default=64)
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--cols", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    state = optimizer_like_state(args.params, args.rows, args.cols)
    times: dict[str, list[float]] = {k: [] for k in ("torch_save", "torch_load", "tree_save", "tree_load")}
    with tempfile.TemporaryDirectory() as tmp:
        pt, st = os.path.join(tmp, "state.pt"), os.path.join(tmp, "state.safetensors")
        for _ in range(args.repeats):
            times["torch_save"].append(timed(torch.save, state, pt))
            times["torch_load"].append(timed(lambda: touch(torch.load(pt, weights_only=False))))
            times["tree_save"].append(timed(save_tree, state, st))
            times["tree_load"].append(timed(lambda: touch(load_tree(st))))
        sizes = {"torch_save_mb": os.path.getsize(pt) / 2**20, "tree_mb": os.path.getsize(st) / 2**20}
    med = {k: statistics.median(v) for k, v in times.items()}
    print(json.dumps({
        **{f"{k}_s": round(v, 4) for k, v in med.items()},
        **{k: round(v, 1) for k, v in sizes.items()},
        "save_ratio_tree_over_torch": round(med["tree_save"] / med["torch_save"], 2),
        "load_ratio_tree_over_torch": round(med["tree_load"] / med["torch_load"], 2),
    }))


if __name__ == "__main__":
    main()
