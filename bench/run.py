"""`make bench`: every benchmark of issue 11 in one table of ratios, each measured side by side.

Rows (each also runnable alone, see its script):
  a  compress vs the bare one-document loop, long and short documents; utilisation   bench/compress.py
  b  Prefect compress flow vs the bare library call, on ~60 s of work                 bench/prefect_ops.py --row
  c  LLoCO vs full-context answer latency at 4k-32k; prompt-position ratios           bench/inference.py
  d  LLoCO vs full-context finetune throughput                                        bench/finetune.py
  e  shard write and read MB/s vs plain pyarrow, local and SeaweedFS S3               bench/shards.py
  f  planning time at 10k, 100k, 1M (10M with --big) committed documents              bench/planning.py (subprocess)
  g  compress peak memory up to a 100k-token document, and its slope                   bench/memory.py
  h  `train-compressor` tokens/s                                                       bench/train_compressor.py (subprocess)

A row whose script is not there yet (f, h come from other branches) is listed as not measured.
Rows a-e and g run in this process (one import of torch); f and h run their scripts and read the
last JSON line. The table goes to stdout, then one JSON line with every row; progress to stderr.

    .venv/bin/python bench/run.py [--quick] [--only a,c] [--skip b] [--big] [--repeats N] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, Goal, Row, table

ROWS = "abcdefgh"
PLANNING_SIZES = [10_000, 100_000, 1_000_000]
PLANNING_GOALS = {(1_000_000, "local"): Goal("<=", 1.0), (1_000_000, "SeaweedFS S3"): Goal("<=", 5.0), (10_000_000, "local"): Goal("<=", 5.0)}
SUBPROCESS_TIMEOUT = 1800


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def json_lines(text: str) -> list[dict]:
    """Every line of a script's stdout that parses as a JSON object, in order."""
    out = []
    for line in text.strip().splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            out.append(value)
    if not out:
        raise ValueError("no JSON line in its output")
    return out


def run_script(script: Path, args: list[str]) -> list[dict]:
    """Run a bench script as a child (same interpreter, this checkout first on the path), without
    the rendezvous variables row d's in-process DeepSpeed engine left (its port is still bound)."""
    from lloco_core.training.engine import child_environment

    env = {**child_environment(), "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    done = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=SUBPROCESS_TIMEOUT, check=False)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"{script.name} {' '.join(args)} exited {done.returncode}: {tail[0]}")
    return json_lines(done.stdout)


def planning_rows(quick: bool, big: bool) -> list[Row]:
    """Row f: bench/planning.py (developer `store`) at each size, local and on SeaweedFS."""
    script = ROOT / "bench" / "planning.py"
    if not script.exists():
        return [Row("f", "planning time", "-", "-", None, "s", note="not measured: bench/planning.py is not in this checkout yet")]
    sizes = [1_000] if quick else PLANNING_SIZES + ([10_000_000] if big else [])
    new = 10 if quick else 1_000
    rows = []
    for place, flag in (("local", []), ("SeaweedFS S3", ["--s3"])):
        for n in sizes:
            if place != "local" and n > 1_000_000:
                continue
            log(f"f: planning {n:,} committed + {new:,} new, {place}")
            result = run_script(script, ["--docs", str(n), "--new", str(new), "--before", "none", *flag])[-1]
            extra = {k: result[k] for k in ("plan_reads", "build_seconds") if k in result}
            rows.append(Row("f", f"plan {n:,} committed + {new:,} new docs, {place}", f"{n:,} committed", f"plan {result['plan_seconds']:.3g} s",
                            float(result["plan_seconds"]), "s", goal=PLANNING_GOALS.get((n, place)), note=json.dumps(extra) if extra else ""))
    if not big and not quick:
        rows.append(Row("f", "plan 10,000,000 committed + 1,000 new docs, local", "-", "-", None, "s", goal=PLANNING_GOALS[(10_000_000, "local")],
                        note="behind --big (building a 10M-document store takes long)"))
    return rows


def train_compressor_rows(quick: bool) -> list[Row]:
    """Row h: bench/train_compressor.py (developer `compressor`): document tokens/s of each objective
    and of its plain causal-LM baseline (JSON lines with `run` and a `*tokens_per_s` figure)."""
    script = ROOT / "bench" / "train_compressor.py"
    if not script.exists():
        return [Row("h", "train-compressor tokens/s", "-", "-", None, "tok/s", note="not measured: bench/train_compressor.py is not in this checkout yet")]
    source = script.read_text()
    args = (["--quick"] if "--quick" in source else ["--steps", "2"] if "--steps" in source else []) if quick else []
    runs = []
    for record in run_script(script, args):
        rate = next((v for k, v in record.items() if k.endswith("tokens_per_s") and isinstance(v, (int, float))), None)
        if rate is not None:
            runs.append((str(record.get("run", "train-compressor")), float(rate)))
    baseline = next((rate for run, rate in runs if "baseline" in run), None)
    rows = []
    for run, rate in runs:
        if "baseline" in run:
            continue
        rows.append(Row("h", f"train-compressor document tok/s, {run}", f"plain LM {baseline:,.0f} tok/s" if baseline else "-", f"{rate:,.0f} tok/s",
                        rate / baseline if baseline else rate, "x" if baseline else "tok/s",
                        note="measured one after the other by bench/train_compressor.py (not interleaved)" if baseline else ""))
    return rows or [Row("h", "train-compressor tokens/s", "-", "-", None, note="its output had no tokens/s figure")]


def measures(work: Path, args: argparse.Namespace) -> dict[str, Callable[[], list[Row]]]:
    """Each row's measurement, imported only when it runs."""
    quick, repeats = args.quick, args.repeats

    def a() -> list[Row]:
        from bench import compress

        return compress.measure(work, quick, repeats)

    def b() -> list[Row]:
        from bench import prefect_ops

        return prefect_ops.measure(work, quick, repeats, args.flow_seconds)

    def c() -> list[Row]:
        from bench import inference

        return inference.measure(work, quick, repeats)

    def d() -> list[Row]:
        from bench import finetune

        return finetune.measure(work, quick, repeats)

    def e() -> list[Row]:
        from bench import shards

        return shards.measure(work, quick, repeats)

    def g() -> list[Row]:
        from bench import memory

        return memory.measure(work, quick)

    return {"a": a, "g": g, "e": e, "c": c, "d": d, "b": b, "f": lambda: planning_rows(quick, args.big), "h": lambda: train_compressor_rows(quick)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny models and workloads, one repeat: a smoke run of every code path, not figures")
    parser.add_argument("--only", default=ROWS, help="rows to run, e.g. a,c (default all)")
    parser.add_argument("--skip", default="", help="rows to leave out")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved repeats per side (default per row: 2-5; 1 with --quick)")
    parser.add_argument("--flow-seconds", type=float, default=60.0, help="row b: library seconds of the flow's work")
    parser.add_argument("--big", action="store_true", help="row f: also 10M committed documents (slow to build)")
    parser.add_argument("--json", type=Path, default=None, help="also write every row to this file")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a row failed (tests)")
    args = parser.parse_args(argv)
    wanted = [r for r in ROWS if r in args.only.replace(",", "") and r not in args.skip.replace(",", "")]
    started, load = time.time(), os.getloadavg()
    rows: list[Row] = []
    failed = []
    with tempfile.TemporaryDirectory(prefix="lloco-bench-") as tmp:
        steps = measures(Path(tmp), args)
        for name in [r for r in steps if r in wanted]:
            log(f"row {name} ...")
            t0 = time.time()
            try:
                got = steps[name]()
            except Exception as err:  # noqa: BLE001 - one broken row must not lose the others' figures
                traceback.print_exc(file=sys.stderr)
                failed.append(name)
                got = [Row(name, "failed", "-", "-", None, note=f"{type(err).__name__}: {err}"[:300])]
            rows += got
            log(f"row {name} done in {time.time() - t0:.0f} s")
    elapsed = time.time() - started
    order = {r: i for i, r in enumerate(ROWS)}
    rows.sort(key=lambda r: order[r.row])
    print(f"lloco bench{' --quick' if args.quick else ''}: {os.cpu_count()} CPUs, load average {load[0]:.1f} at start and {os.getloadavg()[0]:.1f} at end, "
          f"{elapsed / 60:.1f} min; each ratio: median of interleaved repeats (> 1 means lloco ahead), spread = min-max")
    print(table(rows), flush=True)
    record = {"bench": "all", "quick": args.quick, "seconds": round(elapsed, 1), "failed": failed, "rows": [r.as_dict() for r in rows]}
    if args.json:
        args.json.write_text(json.dumps(record, indent=1))
    print(json.dumps(record), flush=True)
    return 1 if failed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
