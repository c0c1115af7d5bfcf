"""LLoCO's answer quality on a laptop, through the real stages: a compressor trained by
`train_compressor` (the session fixture), then compress -> finetune -> evaluate on held-out documents
of the synthetic benchmark, with a decoder window shorter than a document.

What must hold (issue 9): LLoCO + adapter >= 70% exact match; no context at most chance + 5 points;
truncated raw context below LLoCO; LLoCO reads at least 5x fewer context positions than the full
document; the LoRA adapter finetuned on top does not lower the score.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from lloco_core.config import CompressConfig
from lloco_core.model.compress import compress
from lloco_core.qa.config import EvaluateConfig
from lloco_core.qa.evaluate import evaluate
from lloco_core.qa.metrics import exact_match
from lloco_core.training.config import FinetuneConfig
from lloco_core.training.finetune import finetune
from tests.compressor_helpers import BENCHMARK, CORPUS, TrainedCompressor, one_cpu_thread

pytestmark = pytest.mark.slow
WINDOW = 64  # decoder positions: a document (48 tokens) plus its prompt (46) does not fit
FINETUNE = dict(max_steps=30, learning_rate=1e-3, micro_batch_size=8, warmup_ratio=0.0, lr_scheduler="constant", lora_dropout=0.0, holdout=0.0, device="cpu")


@pytest.fixture(scope="module")
def report(trained_compressor: TrainedCompressor, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = str(tmp_path_factory.mktemp("quality") / "store")
    shutil.copytree(trained_compressor.root, root)
    model = str(trained_compressor.checkpoint)
    with one_cpu_thread():
        return _run_stages(trained_compressor, root, model)


def _run_stages(trained_compressor: TrainedCompressor, root: str, model: str) -> dict[str, Any]:
    compressed = compress(CompressConfig(root=root, corpus=CORPUS, model=model, device="cpu"))
    tuned = finetune(FinetuneConfig(root=root, corpus=CORPUS, qa=str(trained_compressor.bench.finetune_qa), model=model, **FINETUNE))
    summary = evaluate(
        EvaluateConfig(root=root, corpus=CORPUS, eval_set=str(trained_compressor.bench.heldout_qa), model=model, adapter_key=tuned["adapter_key"],
                       window=WINDOW, max_new_tokens=4, batch_size=64, limit=240, device="cpu")
    )  # fmt: skip
    rows = [json.loads(line) for line in Path(summary["out"], "predictions.jsonl").read_text().splitlines()]
    exact = {s: sum(exact_match(r["prediction"], r["references"]) for r in rows if r["system"] == s) / summary["systems"][s]["examples"] for s in summary["systems"]}
    print(json.dumps({"exact_match": exact, "systems": summary["systems"], "finetune": {k: tuned[k] for k in ("first_loss", "last_loss", "steps")}}, indent=1))
    return {"summary": summary, "exact": exact, "finetune": tuned, "compress": compressed, "root": root}


def test_lloco_with_adapter_reaches_70_percent_exact_match(report: dict) -> None:
    assert report["summary"]["examples"] == 240
    assert report["exact"]["lloco"] >= 0.70, report["exact"]


def test_no_context_stays_at_chance(report: dict) -> None:
    assert report["exact"]["no_context"] <= BENCHMARK.chance + 0.05, report["exact"]


def test_truncated_raw_context_drops_facts_and_scores_below_lloco(report: dict) -> None:
    systems = report["summary"]["systems"]
    assert systems["truncated"]["mean_prompt_tokens"] <= WINDOW < systems["truncated"]["mean_full_context_tokens"]  # the window cut the document
    assert report["exact"]["truncated"] < report["exact"]["lloco"]


def test_lloco_reads_at_least_5x_fewer_context_positions(report: dict) -> None:
    systems = report["summary"]["systems"]
    prompt = systems["no_context"]["mean_prompt_tokens"]  # the prompt alone
    lloco_context = systems["lloco"]["mean_prompt_tokens"] - prompt  # summary vectors
    document = systems["lloco"]["mean_full_context_tokens"] - prompt  # the raw document
    assert BENCHMARK.segments >= 3 and document >= BENCHMARK.segments * BENCHMARK.segment_length
    assert document >= 5 * lloco_context, (document, lloco_context)


def test_the_adapter_finetuned_on_the_trained_compressor_does_not_lower_the_score(report: dict) -> None:
    """Finetune runs on the trained compressor as on any checkpoint (its loss falling is shown by
    test_finetune.py on this same compressor); here the adapter it made must not cost held-out score."""
    tuned = report["finetune"]
    assert tuned["steps"] == FINETUNE["max_steps"] and tuned["last_loss"] < 1.0
    assert report["exact"]["lloco"] >= report["exact"]["lloco_base"], report["exact"]
