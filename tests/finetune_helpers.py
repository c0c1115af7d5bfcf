"""Shared set-up for the finetune tests: a compressed two-document corpus and a small QA file.

The finetune tests that need to see learning use the session's trained compressor
(`trained_compressor`, tests/compressor_helpers.py) as the base model: a random-init model's output
head caps every logit near +-1, so no LoRA could lower its loss much, while a trained model's head
has no such cap. No scaled head or other trick stands in for training."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from lloco_core.config import CompressConfig, IngestConfig
from lloco_core.model.compress import compress
from lloco_core.store.documents import ingest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "lloco_core" / "data" / "sample_corpus"
DOCS = ("lighthouse_keeper", "lab_report_yeast")

QA_LINES = [
    {"id": "q1", "doc_id": "lighthouse_keeper", "task": "qa", "question": "Who was the last keeper?", "answers": ["Alan Petrie"]},
    {"id": "q2", "doc_id": "lighthouse_keeper", "task": "multiple_choice", "question": "How often does the light flash?", "options": ["Every ninety seconds", "Every ten seconds"], "answers": ["B"]},
    {"id": "q3", "doc_id": "lab_report_yeast", "task": "qa", "question": "Who supervised the experiment?", "answers": ["Dr. Celia Moreau"]},
    {"id": "q4", "doc_id": "lab_report_yeast", "task": "query_summary", "question": "Summarise the result.", "answers": ["Fermentation was fastest at 35 degrees."]},
]


def make_corpus(root: str, model: Path, work: Path, corpus: str = "c") -> Path:
    """Ingest two sample documents, compress them with `model`; return a QA JSONL path."""
    source = work / "docs"
    source.mkdir(parents=True, exist_ok=True)
    for name in DOCS:
        shutil.copy(SAMPLE / f"{name}.txt", source / f"{name}.txt")
    ingest(IngestConfig(root=root, corpus=corpus, source=str(source)))
    compress(CompressConfig(root=root, corpus=corpus, model=str(model), device="cpu"))
    qa = work / "qa.jsonl"
    qa.write_text("".join(json.dumps(line) + "\n" for line in QA_LINES))
    return qa


def kill_after_first_checkpoint(args: list[str], runs: Path, log: Path, env: dict[str, str]) -> list[str]:
    """Run a training command (cwd: the repository) and SIGKILL it as soon as a complete checkpoint
    commit record appears under `runs/*/checkpoints/_commits/`; returns the committed tags. Asserts
    it was killed, not finished, and that the checkpoint files it left are safetensors (no pickle)."""
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log.open("wb"))
    deadline = time.monotonic() + 240
    killed_after: list[str] = []
    while time.monotonic() < deadline and proc.poll() is None:
        records = [r for r in runs.glob("*/checkpoints/_commits/*.json") if not r.name.startswith(".")]  # not a record being written
        if records:
            os.kill(proc.pid, signal.SIGKILL)
            killed_after = [r.stem for r in records]
            break
        time.sleep(0.02)
    proc.wait(timeout=30)
    assert killed_after, f"the run ended (rc {proc.returncode}) before any checkpoint was committed:\n{log.read_text()[-3000:]}"
    assert proc.returncode == -signal.SIGKILL
    files = [p for p in runs.glob("*/checkpoints/step-*/*") if p.is_file()]
    assert files and all(p.suffix == ".safetensors" and p.read_bytes()[8:9] == b"{" for p in files), files
    return killed_after
