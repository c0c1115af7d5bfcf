"""The `train-compressor` flow on a real Prefect server: its task trains in a child process, returns
the summary with a local checkpoint folder, publishes the loss curve as a table artifact, and a second
run of the same inputs is a cache hit (the compressor is committed and its folder is present)."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows._runtime import configured
from flows.train_compressor import CompressorFlowConfig, train_compressor_flow
from lloco_core.config import StoreConfig
from lloco_core.qa.synthetic import SyntheticConfig
from tests.compressor_helpers import CORPUS, synthetic_corpus

from .conftest import Stack

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_flow_trains_publishes_the_loss_and_a_repeat_is_a_cache_hit(prefect_api: Stack, tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client

    root, bench, base = synthetic_corpus(tmp_path / "work", SyntheticConfig(train_documents=8, heldout_documents=1, seed=2))
    config = CompressorFlowConfig(
        root=root, corpus=CORPUS, base=str(base), qa=str(bench.train_qa), out=str(tmp_path / "compressor"), summary_length=2, segment_length=16,
        lm_weight=0.5, lm_sequences=2, qa_documents=4, max_steps=3, warmup_steps=1, device="cpu",
    )  # fmt: skip
    run = configured(train_compressor_flow, StoreConfig(root=root))
    first = run(config)
    assert first["reused"] is False and first["steps"] == 3 and first["checkpoint"] == str(tmp_path / "compressor")
    assert Path(first["checkpoint"], "model.safetensors").is_file()

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts()
    loss = [a for a in artifacts if a.key == f"train-compressor-{CORPUS}-loss"]
    assert loss and "loss" in str(loss[0].data)

    second = run(config)
    assert second["compressor_key"] == first["compressor_key"] and second["steps"] == 3
    assert second["reused"] or second == first  # a Prefect cache hit returns the first result; a store hit says reused
