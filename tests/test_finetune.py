"""Finetune on compressed contexts through DeepSpeed (ZeRO-2, world size 1, CPU accelerator + gloo)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lloco_core.errors import InputError
from lloco_core.store.storage import Store
from lloco_core.training.finetune import FinetuneConfig, finetune, plan_finetune
from tests.compressor_helpers import TrainedCompressor
from tests.finetune_helpers import make_corpus

FAST = dict(learning_rate=5e-3, lora_r=8, epochs=12, warmup_ratio=0.0, lr_scheduler="constant", lora_dropout=0.0, checkpoint_every=10, device="cpu")


@pytest.fixture(scope="module")
def corpus(trained_compressor: TrainedCompressor, tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("ft-corpus")
    root = str(work / "store")
    model = trained_compressor.checkpoint
    qa = make_corpus(root, model, work)
    return {"root": root, "qa": str(qa), "model": str(model), "work": work}


@pytest.fixture(scope="module")
def trained(corpus: dict) -> dict:
    """One real training run, shared by the assertions below."""
    events: list[dict] = []
    seen_files: list[list[str]] = []
    store = Store(corpus["root"])

    def on_progress(event: dict) -> None:
        events.append(event)
        if event["event"] == "checkpoint":
            seen_files.append([p.rsplit("/", 1)[-1] for p in store.list(event["uri"])])

    config = FinetuneConfig(root=corpus["root"], corpus="c", qa=corpus["qa"], model=corpus["model"], **FAST)
    started = time.perf_counter()
    summary = finetune(config, on_progress=on_progress)
    return {"summary": summary, "events": events, "checkpoint_files": seen_files, "config": config, "seconds": time.perf_counter() - started}


def test_loss_falls_clearly(trained: dict) -> None:
    s = trained["summary"]
    curve = json.loads(Path(s["adapter_uri"], "loss.json").read_text())
    n = s["examples"]  # one document's questions are held out: 2 of the 4 train
    first = sum(p["loss"] for p in curve[:n]) / n  # one epoch
    last = sum(p["loss"] for p in curve[-n:]) / n
    print(f"loss first epoch {first:.3f} -> last epoch {last:.3f} over {s['steps']} steps in {trained['seconds']:.1f}s")
    assert n == 2 and s["steps"] == 12 * n == len(curve)
    assert last < 0.5 * first, (first, last)


def test_held_out_documents_are_never_trained_on_and_evaluate_reads_them(trained: dict, corpus: dict) -> None:
    from lloco_core.qa.config import EvaluateConfig
    from lloco_core.qa.evaluate import evaluate

    s = trained["summary"]
    split = s["split"]
    assert (split["train_documents"], split["train_questions"], split["heldout_questions"]) == (1, 2, 2)
    (held,) = split["heldout_documents"]
    lines = [json.loads(line) for line in Path(corpus["qa"]).read_text().splitlines()]
    heldout = [json.loads(line) for line in Path(s["adapter_uri"], "heldout.jsonl").read_text().splitlines()]
    assert [h["id"] for h in heldout] == [line["id"] for line in lines if line["doc_id"] == held]
    assert split["heldout"] == f"{s['adapter_uri']}/heldout.jsonl"
    # `lloco evaluate` without an eval set scores exactly the held-out questions
    summary = evaluate(EvaluateConfig(root=corpus["root"], corpus="c", device="cpu", systems=["lloco"], max_new_tokens=2))
    assert summary["eval_set"] == split["heldout"] and summary["examples"] == 2 and summary["adapter_key"] == s["adapter_key"]
    rows = [json.loads(line) for line in Path(summary["out"], "predictions.jsonl").read_text().splitlines()]
    assert {r["doc_id"] for r in rows} == {held}


def test_runs_through_deepspeed_zero2(trained: dict) -> None:
    s = trained["summary"]
    assert (s["zero_stage"], s["world_size"], s["bf16"]) == (2, 1, False)
    # checkpoints were written by DeepSpeed's ZeRO engine: a partitioned optimizer state per rank
    assert trained["checkpoint_files"], "no checkpoint was committed"
    assert "zero_pp_rank_0_mp_rank_00_optim_states.safetensors" in trained["checkpoint_files"][0]
    assert "mp_rank_00_model_states.safetensors" in trained["checkpoint_files"][0]


def test_adapter_is_standard_peft_and_only_lora_changed(trained: dict, corpus: dict) -> None:
    from peft import PeftModel
    from transformers import LlamaForCausalLM

    folder = Path(trained["summary"]["adapter_uri"])
    assert {"adapter_config.json", "adapter_model.safetensors", "prompts.json", "loss.json", "loss.png", "finetune.json"} <= {p.name for p in folder.iterdir()}
    assert not (folder / "checkpoints").exists()
    original = load_file(Path(corpus["model"]) / "model.safetensors")
    base = LlamaForCausalLM.from_pretrained(corpus["model"])  # plain transformers + peft, no lloco code
    model = PeftModel.from_pretrained(base, str(folder))
    merged_names = 0
    for name, tensor in model.named_parameters():
        if "lora_" in name:
            continue
        plain = name.removeprefix("base_model.model.").replace(".base_layer", "")
        assert torch.equal(tensor, original[plain]), plain
        merged_names += 1
    assert merged_names == len([k for k in original if k != "embed_summary.weight"])
    lora = load_file(folder / "adapter_model.safetensors")
    assert lora and all("lora_" in k for k in lora)
    assert any(k.endswith("lora_B.weight") and v.abs().sum() > 0 for k, v in lora.items())  # B starts at zero
    config = json.loads((folder / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"]) == (8, 16) and sorted(config["target_modules"]) == ["k_proj", "o_proj", "q_proj", "v_proj"]


def test_finished_adapter_is_reused(trained: dict) -> None:
    started = time.perf_counter()
    again = finetune(trained["config"])
    assert again["reused"] is True and again["adapter_key"] == trained["summary"]["adapter_key"] and again["steps_run"] == 0
    assert time.perf_counter() - started < 10


def test_paper_defaults() -> None:
    c = FinetuneConfig(corpus="c", qa="q.jsonl", model="m")
    assert (c.lora_r, c.lora_alpha, c.lora_dropout, c.learning_rate, c.lr_scheduler, c.warmup_ratio, c.epochs, c.zero_stage) == (8, 16, 0.05, 2e-5, "cosine", 0.04, 3, 2)
    assert c.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj"]


# bad input: clear error naming the file/line, nothing written ----------------------------------

def _files(root: str) -> set[str]:
    return {str(p.relative_to(root)) for p in Path(root).rglob("*")}


def _bad_qa(corpus: dict, name: str, text: str) -> str:
    path = Path(corpus["work"]) / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("missing-doc.jsonl", '{"id": "a", "doc_id": "lighthouse_keeper", "question": "q?", "answers": ["x"]}\n{"id": "b", "doc_id": "no_such_doc", "question": "q?", "answers": ["x"]}\n', ":2: doc_id 'no_such_doc' has no committed embeddings"),
        ("empty-answer.jsonl", '{"id": "a", "doc_id": "lighthouse_keeper", "question": "q?", "answers": [""]}\n', ":1: 'answers' holds an empty"),
        ("no-answers.jsonl", '{"id": "a", "doc_id": "lighthouse_keeper", "question": "q?", "answers": []}\n', ":1: 'answers' must be a non-empty list"),
        ("malformed.jsonl", '{"id": "a", "doc_id": "lighthouse_keeper", "question": "q?", "answers": ["x"]}\n\n{"id": "b", "doc_id": \n', ":3: malformed JSON"),
    ],
)
def test_bad_qa_is_a_clear_error_and_writes_nothing(corpus: dict, tmp_path: Path, name: str, text: str, message: str) -> None:
    root = str(tmp_path / "store")
    import shutil

    shutil.copytree(corpus["root"], root)
    before = _files(root)
    qa = _bad_qa(corpus, name, text)
    with pytest.raises(InputError) as err:
        finetune(FinetuneConfig(root=root, corpus="c", qa=qa, model=corpus["model"], device="cpu"))
    assert name in str(err.value) and message in str(err.value)
    assert _files(root) == before


def test_hidden_size_mismatch_is_a_clear_error(corpus: dict, tmp_path: Path) -> None:
    import shutil

    from lloco_core.model.tiny import build_tiny_compressor

    root = str(tmp_path / "store")
    shutil.copytree(corpus["root"], root)
    before = _files(root)
    other = build_tiny_compressor(tmp_path / "wide", hidden_size=32, num_heads=2, vocab_size=300)
    with pytest.raises(InputError, match=r"hidden size mismatch: model .* has hidden_size 32, but the embeddings .* have hidden_size 64"):
        finetune(FinetuneConfig(root=root, corpus="c", qa=corpus["qa"], model=str(other), device="cpu"))
    assert _files(root) == before


def test_key_changes_with_settings_and_data(corpus: dict) -> None:
    base = FinetuneConfig(root=corpus["root"], corpus="c", qa=corpus["qa"], model=corpus["model"], device="cpu")
    key = plan_finetune(base).adapter_key
    assert plan_finetune(base.model_copy(update={"checkpoint_every": 7})).adapter_key == key
    assert plan_finetune(base.model_copy(update={"lora_r": 4})).adapter_key != key
    assert plan_finetune(base.model_copy(update={"holdout": 0.0})).adapter_key != key
    assert plan_finetune(base.model_copy(update={"prompt_set": "lloco-v1"})).adapter_key != key
    other_qa = Path(corpus["work"]) / "qa-other.jsonl"
    other_qa.write_text(Path(corpus["qa"]).read_text().replace("Alan Petrie", "Nora Brennan"))
    assert plan_finetune(base.model_copy(update={"qa": str(other_qa)})).adapter_key != key
