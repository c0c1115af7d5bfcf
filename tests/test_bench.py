"""The benchmarks run: `bench/run.py --quick` prints one well-formed table, `bench/gpu.sh --device
cpu --tiny` runs every piece of the GPU script on CPU, also with the packages a bare GPU image
lacks made unimportable. No timing is asserted: only that each row measured something."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.common import Goal, Row, interleave, ratio_row, table

ROOT = Path(__file__).resolve().parent.parent
# What the GPU image of this workplace does not have (its package list): DeepSpeed, pydantic
# (so nothing that imports lloco_core.config), Prefect, s3fs.
BARE_GPU_IMAGE_LACKS = ("deepspeed", "pydantic", "prefect", "s3fs")


def run(args: list[str], env: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(args, cwd=ROOT, env=environ, capture_output=True, text=True, timeout=timeout, check=False)


def table_rows(stdout: str) -> dict[str, list[str]]:
    """Row letter -> the table lines of that row (between the dashed rule and the first blank line)."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("---  "))
    rows: dict[str, list[str]] = {}
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        rows.setdefault(line.split()[0], []).append(line)
    return rows


def test_interleave_alternates_order_and_rows_report_the_median_ratio() -> None:
    calls: list[str] = []
    interleave({"base": lambda: calls.append("base") or 2.0, "new": lambda: calls.append("new") or 1.0}, 4)
    assert calls == ["base", "new", "new", "base", "base", "new", "new", "base"]
    times = {"base": [2.0, 4.0, 3.0], "new": [1.0, 1.0, 3.0]}  # per-repeat ratios 2, 4, 1
    row = ratio_row("x", "m", times, "base", "new", higher_is_better=False, unit_label="s", goal=Goal(">=", 1.5))
    assert (row.figure, row.spread, row.repeats, row.met) == (2.0, (1.0, 4.0), 3, True)
    rendered = table([row, Row("y", "not run", "-", "-", None, note="why")])
    assert "2.00x" in rendered and "1.00x-4.00x (3)" in rendered and "(y) not run: why" in rendered


@pytest.mark.slow  # ~30 s: every row's code path, two SeaweedFS servers
def test_quick_run_prints_one_table_with_every_row(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = run([sys.executable, "bench/run.py", "--quick", "--strict", "--skip", "b", "--json", str(out)])
    assert done.returncode == 0, done.stderr[-3000:]
    rows = table_rows(done.stdout)
    assert set(rows) == set("acdefgh"), rows.keys()
    record = json.loads(done.stdout.strip().splitlines()[-1])
    assert record == json.loads(out.read_text()) and record["failed"] == []
    by_row: dict[str, list[dict]] = {}
    for r in record["rows"]:
        by_row.setdefault(r["row"], []).append(r)
    for letter in "acdeg":  # measured here: a number on every line
        assert all(isinstance(r["figure"], float) for r in by_row[letter]), by_row[letter]
    for letter in "fh":  # scripts from other branches: measured when present, else said so
        script = {"f": "planning.py", "h": "train_compressor.py"}[letter]
        if not (ROOT / "bench" / script).exists():
            assert by_row[letter][0]["figure"] is None and "not in this checkout" in by_row[letter][0]["note"]
    assert {r["measure"].split(",")[-1].strip() for r in by_row["e"]} >= {"local"}
    assert [r["unit"] for r in by_row["g"]] == ["MB", "MB"]


def _blocker(folder: Path, modules: tuple[str, ...]) -> Path:
    """A sitecustomize that hides `modules` from every import finder, as on an image without them
    (`importlib.util.find_spec` answers None, `import` raises ModuleNotFoundError)."""
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(
        "import sys\n"
        f"HIDDEN = {modules!r}\n"
        "class Hide:\n"
        "    def __init__(self, inner):\n"
        "        self.inner = inner\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in HIDDEN or not hasattr(self.inner, 'find_spec'):\n"
        "            return None\n"
        "        return self.inner.find_spec(name, path, target)\n"
        "    def __getattr__(self, attr):\n"
        "        return getattr(self.inner, attr)\n"
        "sys.meta_path[:] = [Hide(f) for f in sys.meta_path]\n"
    )
    return folder


def test_gpu_script_runs_every_piece_tiny_on_cpu_without_what_a_bare_gpu_image_lacks(tmp_path: Path) -> None:
    site = _blocker(tmp_path / "site", BARE_GPU_IMAGE_LACKS)
    done = run(["bash", "bench/gpu.sh", "--device", "cpu", "--tiny", "--batch-sizes", "1", "4", "--repeats", "1"],
               env={"PYTHONPATH": f"{site}{os.pathsep}{ROOT}", "PYTHON": sys.executable, "WHEELS": str(tmp_path / "no-wheels")})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = table_rows(done.stdout.split("lloco GPU bench on")[-1])
    assert {line.split()[-1] for line in rows["a"] if "batch 4" in line} <= {"yes", "NO", "(1)"}
    record = json.loads(done.stdout.strip().splitlines()[-1])
    assert record["failed"] == 0
    measured = [r for r in record["rows"] if r["figure"] is not None]
    kinds = {(r["row"], r["measure"].split(",")[0]) for r in measured}
    assert {("a", "compress short (40 tok)"), ("a", "compress long (400 tok)"), ("c", "answer latency at 1k context (prefill + 4 tokens)")} <= kinds
    finetune = [r for r in measured if r["row"] == "d"]
    assert len(finetune) == 1 and "plain torch AdamW (ModuleNotFoundError" in finetune[0]["note"]


@pytest.mark.slow
def test_gpu_script_tiny_on_cpu_through_deepspeed() -> None:
    done = run(["bash", "bench/gpu.sh", "--device", "cpu", "--tiny", "--batch-sizes", "1", "--repeats", "1", "--only", "d"], env={"PYTHON": sys.executable})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    record = json.loads(done.stdout.strip().splitlines()[-1])
    (finetune,) = [r for r in record["rows"] if r["row"] == "d"]
    assert finetune["figure"] > 0 and "DeepSpeed ZeRO-2" in finetune["note"]
