#!/usr/bin/env bash
# The GPU benchmark in one prepared command (not part of CI): compression tokens/s and MFU at
# LLaMA-2-7B shape (random weights, bf16, sdpa and flash-attention-2 if installed, batch 1/4/16/64,
# short and long documents), the answer-latency ratio at 32k, finetune steps/s with LoRA, ZeRO-2
# and gradient checkpointing. Prints one table; finishes in under 8 minutes (the Python side
# skips what would not fit in --budget, and `timeout` stops it at 7.5 minutes whatever happens).
#
#   bench/gpu.sh                        # on a GPU machine, from the repository root
#   bench/gpu.sh --device cpu --tiny    # anywhere: every piece at a tiny shape on CPU (seconds)
#
# A bare GPU image may lack DeepSpeed and pydantic (DeepSpeed needs it): when they do not import,
# the wheels in $WHEELS (default .whl/; bench/gpu_wheels.sh makes them) are installed first; without
# them finetuning runs a plain torch AdamW loop and the table says so.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$(test -x .venv/bin/python && echo .venv/bin/python || echo python3)}
WHEELS=${WHEELS:-.whl}
if ! "$PYTHON" -c "import deepspeed, pydantic" 2>/dev/null && compgen -G "$WHEELS/*.whl" > /dev/null; then
  if "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/lloco-site "$WHEELS"/*.whl; then
    export PYTHONPATH="/tmp/lloco-site${PYTHONPATH:+:$PYTHONPATH}"
  else
    echo "gpu.sh: the wheels in $WHEELS did not install here; going on without them" >&2
  fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
exec timeout --signal=TERM --kill-after=10 450 "$PYTHON" bench/gpu.py --budget 330 "$@"
