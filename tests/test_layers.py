"""The library layer stays importable without Prefect (notebooks, GPU jobs, other orchestrators)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import lloco_core


def test_lloco_core_imports_no_prefect() -> None:
    modules = [m.name for m in pkgutil.walk_packages(lloco_core.__path__, prefix="lloco_core.")]
    code = "import importlib, sys\n" + "".join(f"importlib.import_module({m!r})\n" for m in modules) + "print(sorted(m for m in sys.modules if m.split('.')[0] == 'prefect'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    assert out == "[]", f"lloco_core pulled in Prefect modules: {out}"
