"""Shared set-up for the finetune tests: a compressed two-document corpus and a small QA file.

The finetune tests that need to see learning use the session's trained compressor
(`trained_compressor`, tests/compressor_helpers.py) as the base model: a random-init model's output
head caps every logit near +-1, so no LoRA could lower its loss much, while a trained model's head
has no such cap. No scaled head or other trick stands in for training."""

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
