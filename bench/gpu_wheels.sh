#!/usr/bin/env bash
# Wheels for what the workplace's GPU image lacks and bench/gpu.sh uses: DeepSpeed (finetune with
# ZeRO-2) and its pure-Python needs that are not there (pydantic and friends, hjson). Run here, once,
# from the repository root; .whl/ is git-ignored and travels with `run` when named in `carry`.
# The versions are this venv's, so the GPU run uses what the tests here used.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
version() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }
mkdir -p .whl
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  "pydantic==$(version pydantic)" "pydantic-core==$(version pydantic-core)" "annotated-types==$(version annotated-types)" \
  "typing-inspection==$(version typing-inspection)" "typing-extensions==$(version typing-extensions)" "hjson==$(version hjson)"
# DeepSpeed publishes a source archive only: build a pure-Python wheel (no compiled ops; they are
# built just in time where needed, and lloco passes a torch optimizer, so none is).
DS_BUILD_OPS=0 "$PY" -m pip wheel -q --no-deps --no-build-isolation -w .whl "deepspeed==$(version deepspeed)"
ls -l .whl
