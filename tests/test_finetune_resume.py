"""A finetune killed with SIGKILL after a committed checkpoint resumes from it and ends with the
bit-identical adapter to an uninterrupted run, without repeating finished steps (the CLI, as a user runs it).
The checkpoint it resumes from holds safetensors files only."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lloco_core.training.engine import child_environment
from lloco_core.training.finetune import FinetuneConfig, finetune
from tests.compressor_helpers import TrainedCompressor
from tests.finetune_helpers import REPO, kill_after_first_checkpoint, make_corpus

SETTINGS = dict(epochs=10, learning_rate=5e-3, checkpoint_every=3, holdout=0.0)  # 40 steps (all 4 questions); dropout 0.05 stays on (RNG is restored)


def _cli(root: str, qa: Path, model: Path) -> list[str]:
    args = [sys.executable, "-m", "lloco.cli", "finetune", "--corpus", "c", "--qa", str(qa), "--model", str(model), "--root", root, "--device", "cpu"]
    for name, value in SETTINGS.items():
        args += ["--" + name.replace("_", "-"), str(value)]
    return args


@pytest.mark.slow
def test_sigkill_after_checkpoint_then_resume_matches_uninterrupted(trained_compressor: TrainedCompressor, tmp_path: Path) -> None:
    model = trained_compressor.checkpoint
    root = str(tmp_path / "store")
    qa = make_corpus(root, model, tmp_path)
    reference_root = str(tmp_path / "reference")
    shutil.copytree(root, reference_root)
    commits = Path(root, "c", "adapters")
    env = {**child_environment(), "PYTHONPATH": str(REPO)}  # not the rank/port of in-process finetunes

    kill_after_first_checkpoint(_cli(root, qa, model), commits, tmp_path / "first-run.log", env)
    assert not list(commits.glob("*/_commits/adapter.json")), "the adapter must not be finished after the kill"

    resumed = subprocess.run(_cli(root, qa, model), cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    summary = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert summary["resumed_from_step"] >= 3 and summary["resumed_from_step"] % 3 == 0, summary["checkpoints_refused"]
    assert summary["steps"] == 40 and summary["steps_run"] == 40 - summary["resumed_from_step"]  # no step repeated
    curve = json.loads(Path(summary["adapter_uri"], "loss.json").read_text())
    assert [p["step"] for p in curve] == list(range(1, 41))

    reference = finetune(FinetuneConfig(root=reference_root, corpus="c", qa=str(qa), model=str(model), device="cpu", **SETTINGS))
    assert reference["adapter_key"] == summary["adapter_key"] and reference["resumed_from_step"] == 0
    got = load_file(Path(summary["adapter_uri"], "adapter_model.safetensors"))
    want = load_file(Path(reference["adapter_uri"], "adapter_model.safetensors"))
    assert got.keys() == want.keys()
    for name in want:  # bit-identical: the pickle-free checkpoint restores every bit of the training state
        assert torch.equal(got[name], want[name]), name
    ref_curve = json.loads(Path(reference["adapter_uri"], "loss.json").read_text())
    assert curve == ref_curve
