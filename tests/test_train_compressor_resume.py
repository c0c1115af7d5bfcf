"""`lloco train-compressor` as users run it: SIGKILLed after a committed checkpoint, run again, it
resumes there and ends with the same weights as an uninterrupted run; a third identical run is a
cache hit. Both objectives (AutoCompressor next-token and compress-then-answer) are on."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lloco_core.qa.synthetic import SyntheticConfig
from lloco_core.training.compressor import train_compressor
from lloco_core.training.compressor_config import CompressorConfig
from lloco_core.training.engine import child_environment
from tests.compressor_helpers import CORPUS, one_cpu_thread, synthetic_corpus
from tests.finetune_helpers import REPO, kill_after_first_checkpoint

SETTINGS = dict(summary_length=4, segment_length=32, max_steps=12, checkpoint_every=4, qa_documents=4, lm_sequences=2, lm_weight=0.5, learning_rate=1e-3, warmup_steps=2)


def _cli(root: str, base: Path, qa: Path, out: Path) -> list[str]:
    args = [sys.executable, "-m", "lloco.cli", "train-compressor", "--base", str(base), "--corpus", CORPUS, "--qa", str(qa), "--out", str(out), "--root", root, "--device", "cpu"]
    for name, value in SETTINGS.items():
        args += ["--" + name.replace("_", "-"), str(value)]
    return args


@pytest.mark.slow
def test_sigkill_after_checkpoint_then_resume_matches_uninterrupted(tmp_path: Path) -> None:
    root, bench, base = synthetic_corpus(tmp_path / "work", SyntheticConfig(train_documents=40, heldout_documents=2, seed=1))
    reference_root = str(tmp_path / "reference")
    shutil.copytree(root, reference_root)
    commits = Path(root, CORPUS, "compressors")
    env = {**child_environment(), "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    out = tmp_path / "compressor"

    kill_after_first_checkpoint(_cli(root, base, bench.train_qa, out), commits, tmp_path / "first-run.log", env)
    assert not list(commits.glob("*/_commits/compressor.json")), "the compressor must not be finished after the kill"

    resumed = subprocess.run(_cli(root, base, bench.train_qa, out), cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    summary = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert summary["resumed_from_step"] in (4, 8) and summary["steps"] == 12 and summary["steps_run"] == 12 - summary["resumed_from_step"]
    assert summary["checkpoint"] == str(out) and summary["objectives"] == {"lm": 0.5, "qa": 1.0}
    curve = json.loads(Path(summary["uri"], "loss.json").read_text())
    assert [p["step"] for p in curve] == list(range(1, 13)) and all("lm_loss" in p and "qa_loss" in p for p in curve)

    config = CompressorConfig(root=reference_root, corpus=CORPUS, base=str(base), qa=str(bench.train_qa), device="cpu", **SETTINGS)
    with one_cpu_thread():
        reference = train_compressor(config)
    assert reference["compressor_key"] == summary["compressor_key"] and reference["resumed_from_step"] == 0
    got, want = load_file(out / "model.safetensors"), load_file(Path(reference["checkpoint"]) / "model.safetensors")
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-6)

    again = train_compressor(config.model_copy(update={"root": root, "out": str(out)}))
    assert again["reused"] is True and again["steps_run"] == 0 and again["compressor_key"] == summary["compressor_key"]
