"""Shared fixtures: a tiny AutoCompressor-format checkpoint built once per session, a fresh store.

The checkpoint is random-init from a config and saved with save_pretrained (safetensors), so every
test runs the same loading code as a real AutoCompressor-Llama-2 checkpoint.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

WORDS = (
    "the river castle king queen sword forest storm harbor ship captain letter secret garden winter summer "
    "mountain village bridge tower lantern merchant silver golden ancient quiet north south east west "
    "answer question document memory summary long context model token compress read write"
).split()


def make_text(seed: int, n_words: int) -> str:
    """Deterministic pseudo-prose: long documents of any length with no data from outside."""
    rng = random.Random(seed)
    sentences, words = [], 0
    while words < n_words:
        length = rng.randint(5, 14)
        sentences.append(" ".join(rng.choice(WORDS) for _ in range(length)).capitalize() + ".")
        words += length
    return " ".join(sentences)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """GPU tests skip cleanly where there is no CUDA."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """hidden 64, 2 layers, summary_length 4, segment_length 32, ~600-token BPE vocabulary."""
    from lloco_core.model.tiny import build_tiny_compressor

    texts = [make_text(seed, 400) for seed in range(20)]
    return build_tiny_compressor(tmp_path_factory.mktemp("tiny-model"), texts=texts, vocab_size=600)


@pytest.fixture
def root(tmp_path: Path) -> str:
    """A fresh local store root."""
    return str(tmp_path / "store")


@pytest.fixture(scope="session")
def trained_compressor(tmp_path_factory: pytest.TempPathFactory):
    """A tiny AutoCompressor trained from a random LLaMA base on the synthetic benchmark, once per
    session (tests/compressor_helpers.py): it answers held-out questions, so tests can see learning."""
    from tests.compressor_helpers import train_quality_compressor

    return train_quality_compressor(tmp_path_factory.mktemp("trained-compressor"))
