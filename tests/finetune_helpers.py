"""Shared set-up for the finetune tests: a compressed two-document corpus and a small QA file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from lloco_core.config import CompressConfig, IngestConfig
from lloco_core.model.compress import compress
from lloco_core.store.documents import ingest

SAMPLE = Path(__file__).resolve().parents[1] / "lloco_core" / "data" / "sample_corpus"
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


def sharpen_head(model: Path, out: Path, factor: float = 30.0) -> Path:
    """A copy of the tiny checkpoint whose frozen output head is `factor` times larger.

    A random-init head (std 0.02, hidden 64) caps every logit near +-1, so no LoRA on q/k/v/o can
    push the loss far below log(vocab); a pretrained model's head has no such cap. Scaling it
    lets the tests see learning as it happens on a real base model.
    """
    from safetensors.torch import load_file, save_file

    shutil.copytree(model, out, dirs_exist_ok=True)
    weights = load_file(out / "model.safetensors")
    weights["lm_head.weight"] = weights["lm_head.weight"] * factor
    save_file(weights, out / "model.safetensors", metadata={"format": "pt"})
    return out
