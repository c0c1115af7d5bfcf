"""How fast the command line answers: `--help`, each command's `--help`, and usage errors, as the
median wall time of N runs of a fresh process, for this tree and optionally another one (an older
checkout: `git archive <rev> | tar -x -C /tmp/before`), interleaved run by run so both see the
same machine load.

    .venv/bin/python bench/cli.py [--before /tmp/before] [--runs 5]

Prints a table and, last, one JSON line with the medians (seconds). Target: under 1.5 s each.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
CASES: dict[str, list[str]] = {
    "lloco --help": ["--help"],
    "ingest --help": ["ingest", "--help"],
    "compress --help": ["compress", "--help"],
    "finetune --help": ["finetune", "--help"],
    "ask --help": ["ask", "--help"],
    "evaluate --help": ["evaluate", "--help"],
    "usage error: compress without --model": ["compress", "--corpus", "c"],
    "usage error: ask without a question": ["ask", "--corpus", "c"],
    "invalid value: compress --shard-size 0": ["compress", "--corpus", "c", "--model", "m", "--shard-size", "0"],
    "invalid value: finetune --corpus ../x": ["finetune", "--corpus", "../x", "--qa", "q.jsonl", "--model", "m"],
}


def timed(tree: Path, argv: list[str], cwd: Path) -> tuple[float, int]:
    """Wall time of `python -m lloco.cli ARGV` importing the code of `tree`, and its exit status."""
    env = {**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("LLOCO_ROOT", None)
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "lloco.cli", *argv], env=env, cwd=cwd, capture_output=True, timeout=300)
    return time.perf_counter() - started, proc.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, help="another source tree to compare with (default: none)")
    parser.add_argument("--runs", type=int, default=5, help="runs per case and tree (default: 5)")
    args = parser.parse_args()
    trees = {"after": HERE} | ({"before": args.before.resolve()} if args.before else {})
    scratch = Path(os.environ.get("TMPDIR", "/tmp")) / f"lloco-bench-cli-{os.getpid()}"
    scratch.mkdir(parents=True, exist_ok=True)  # an empty cwd: a command that wrongly creates ./lloco_data shows up here
    times: dict[str, dict[str, list[float]]] = {case: {name: [] for name in trees} for case in CASES}
    status: dict[str, dict[str, int]] = {case: {} for case in CASES}
    for case, argv in CASES.items():
        for _ in range(args.runs):
            for name, tree in trees.items():  # interleaved: both trees see the same load
                seconds, code = timed(tree, argv, scratch)
                times[case][name].append(seconds)
                status[case][name] = code
    medians = {case: {name: round(statistics.median(values), 3) for name, values in per.items()} for case, per in times.items()}
    header = f"{'case':42s} " + " ".join(f"{name + ' (s)':>11s}" for name in trees) + ("   ratio" if len(trees) == 2 else "") + "  exit"
    print(header)
    for case, per in medians.items():
        ratio = f"  {per['before'] / per['after']:5.1f}x" if len(trees) == 2 else ""
        print(f"{case:42s} " + " ".join(f"{per[name]:11.2f}" for name in trees) + ratio + "  " + "/".join(str(status[case][n]) for n in trees))
    leftovers = sorted(p.name for p in scratch.iterdir())
    print(f"files left in the working directory: {leftovers or 'none'}")
    scratch.rmdir() if not leftovers else None
    print(json.dumps({"runs": args.runs, "median_s": medians, "left_in_cwd": leftovers}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
