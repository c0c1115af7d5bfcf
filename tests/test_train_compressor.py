"""Compressor training: the checkpoint it writes is a published-format AutoCompressor that loads and
compresses through the same path as any other; a repeat is a cache hit; bad input writes nothing;
the AutoCompressor objective trains on its own (random segment lengths, gradients cut beyond k)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lloco_core.errors import InputError
from lloco_core.model.autocompressor import load_compressor
from lloco_core.model.segments import segment_document
from lloco_core.model.summarize import summarize_documents
from lloco_core.training.compressor import plan_compressor, train_compressor
from lloco_core.training.compressor_config import CompressorConfig
from lloco_core.training.compressor_data import LMData, random_segment_lengths, token_stream
from lloco_core.training.compressor_objective import lm_loss
from tests.compressor_helpers import CORPUS, TrainedCompressor
from tests.fixtures_compress import plain_summaries


def test_checkpoint_is_in_the_published_format(trained_compressor: TrainedCompressor) -> None:
    folder = trained_compressor.checkpoint
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["LlamaAutoCompressorModel"] and config["model_type"] == "llama"
    assert (config["summary_length"], config["accumulate_summary"], config["segment_length"], config["segment_lengths"]) == (
        trained_compressor.config.summary_length, True, trained_compressor.config.segment_length, [trained_compressor.config.segment_length]
    )
    weights = load_file(folder / "model.safetensors")
    assert weights["embed_summary.weight"].shape == (config["summary_length"], config["hidden_size"])  # at the root, as published
    assert not any(k.startswith("model.embed_summary") or "lora" in k for k in weights)
    base = load_file(trained_compressor.base / "model.safetensors")
    assert set(weights) == set(base) | {"embed_summary.weight"}
    changed = [k for k in base if not torch.equal(base[k], weights[k])]
    assert len(changed) == len(base), "full fine-tuning changes every weight"
    assert (folder / "tokenizer.json").is_file()


def test_loads_like_a_published_checkpoint_and_summaries_equal_the_plain_loop(trained_compressor: TrainedCompressor) -> None:
    loaded = load_compressor(str(trained_compressor.checkpoint), "cpu")  # the strict loader compress uses
    assert loaded.summary_length == trained_compressor.config.summary_length and loaded.accumulate_summary
    text = json.loads(trained_compressor.bench.corpus.read_text().splitlines()[-1])["text"]
    segments = [s.token_ids for s in segment_document(loaded.tokenizer, text, loaded.default_segment_length())]
    assert len(segments) == 3
    (got,) = summarize_documents(loaded.model, [segments])
    torch.testing.assert_close(got, plain_summaries(loaded.model, segments), atol=1e-5, rtol=0)


def test_repeat_is_a_cache_hit(trained_compressor: TrainedCompressor, tmp_path: Path) -> None:
    started = time.perf_counter()
    again = train_compressor(trained_compressor.config.model_copy(update={"out": str(tmp_path / "copy")}))
    assert again["reused"] is True and again["steps_run"] == 0
    assert again["compressor_key"] == trained_compressor.summary["compressor_key"]
    assert time.perf_counter() - started < 15
    assert (tmp_path / "copy" / "model.safetensors").read_bytes() == (trained_compressor.checkpoint / "model.safetensors").read_bytes()


def test_key_changes_with_settings_data_and_base(trained_compressor: TrainedCompressor, tmp_path: Path) -> None:
    config = trained_compressor.config
    key = plan_compressor(config).key
    assert plan_compressor(config.model_copy(update={"checkpoint_every": 7, "out": None})).key == key
    assert plan_compressor(config.model_copy(update={"max_steps": config.max_steps + 1})).key != key
    other_qa = tmp_path / "qa.jsonl"
    other_qa.write_text(trained_compressor.bench.train_qa.read_text().replace('"amber"', '"azure"', 1))
    assert plan_compressor(config.model_copy(update={"qa": str(other_qa)})).key != key


def _files(root: str) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in Path(root).rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"qa": "missing.jsonl"}, "cannot read QA file"),
        ({"qa": "BAD_DOC"}, ":1: doc_id 'no-such-doc' is not a document of corpus"),
        ({"base": "/no/such/model"}, "does not exist"),
        ({"corpus": "empty"}, "has no documents"),
        ({"summary_length": "OWN", "base": "COMPRESSOR"}, None),  # an AutoCompressor with its own summary length trains further: no error
    ],
)
def test_bad_input_is_a_clear_error_and_writes_nothing(trained_compressor: TrainedCompressor, tmp_path: Path, change: dict, message: str | None) -> None:
    bad_qa = tmp_path / "bad.jsonl"
    bad_qa.write_text(json.dumps({"id": "x", "doc_id": "no-such-doc", "question": "q?", "answers": ["a"]}) + "\n")
    substitutes = {"BAD_DOC": str(bad_qa), "COMPRESSOR": str(trained_compressor.checkpoint), "OWN": trained_compressor.config.summary_length}
    change = {k: substitutes.get(v, v) if isinstance(v, str) else v for k, v in change.items()}
    before = _files(trained_compressor.root)
    config = trained_compressor.config.model_copy(update={"out": None, **change})
    if message is None:
        assert plan_compressor(config).base_is_autocompressor
        return
    with pytest.raises(InputError, match=message):
        train_compressor(config)
    assert _files(trained_compressor.root) == before


def test_an_autocompressor_base_with_another_summary_length_is_refused(trained_compressor: TrainedCompressor) -> None:
    own = trained_compressor.config.summary_length
    config = trained_compressor.config.model_copy(update={"base": str(trained_compressor.checkpoint), "summary_length": own + 1})
    with pytest.raises(InputError, match=f"summary_length {own}; --summary-length {own + 1}"):
        plan_compressor(config)


def test_random_segment_lengths_cover_the_sequence() -> None:
    generator = torch.Generator().manual_seed(0)
    draws = [random_segment_lengths(64, 3, generator) for _ in range(200)]
    assert all(sum(d) == 64 and min(d) >= 2 and len(d) == 3 for d in draws)
    assert len({tuple(d) for d in draws}) > 100  # random, not fixed
    assert random_segment_lengths(10, 1, generator) == [10]


def test_autocompressor_objective_cuts_gradients_beyond_k_segments(trained_compressor: TrainedCompressor) -> None:
    """Next-token loss per segment given earlier summaries; the softprompt entering a substep is
    detached, so adding a second substep leaves the gradient reaching the first substep's token
    embeddings exactly what the first substep's own loss gives (halved: the loss is the mean)."""
    loaded = load_compressor(str(trained_compressor.checkpoint), "cpu")
    model = loaded.model.train()
    config = CompressorConfig(corpus=CORPUS, base="b", summary_length=8, segment_length=32, gradient_segments=2, lm_substeps=2, lm_sequences=2, qa_weight=0.0)
    texts = [json.loads(line)["text"] for line in trained_compressor.bench.corpus.read_text().splitlines()[:4]]
    batch = LMData.build(token_stream(loaded.tokenizer, texts), config, 32).batch(step=1)
    assert batch.ids.shape == (2, 128) and [sum(s) for s in batch.substeps] == [64, 64] and len(batch.substeps[0]) == 2

    def first_substep_grads(substeps: int) -> list[torch.Tensor]:
        captured: list[torch.Tensor] = []

        def keep(_module, _inputs, output):
            output.retain_grad()
            captured.append(output)

        handle = model.get_input_embeddings().register_forward_hook(keep)
        try:
            loss, _ = lm_loss(model, type(batch)(batch.ids[:, : 64 * substeps], batch.substeps[:substeps]), accumulate=True)
            model.zero_grad()
            loss.backward()
        finally:
            handle.remove()
        return [t.grad for t in captured[:2]]  # the two segments of substep 1

    alone, both = first_substep_grads(1), first_substep_grads(2)
    assert all(g.abs().sum() > 0 for g in alone)
    for a, b in zip(alone, both):
        torch.testing.assert_close(b, a / 2, atol=1e-7, rtol=1e-4)
    assert model.embed_summary.weight.grad.abs().sum() > 0  # summary tokens are trained through the next segment's loss


def test_status_lists_the_trained_compressor(trained_compressor: TrainedCompressor) -> None:
    from tests.fixtures_compress import run_cli

    rc, _, err, status = run_cli("status", "--corpus", CORPUS, "--root", trained_compressor.root)
    assert rc == 0, err
    (row,) = status["corpora"][0]["compressors"]
    assert row["compressor_key"] == trained_compressor.summary["compressor_key"] and row["finished"] is True
    assert row["steps"] == trained_compressor.config.max_steps and row["summary_length"] == trained_compressor.config.summary_length


def test_verify_checks_the_compressor_and_repair_makes_the_next_run_train_again(trained_compressor: TrainedCompressor, tmp_path: Path) -> None:
    import shutil

    from lloco_core.store.storage import Store
    from lloco_core.store.verify import verify
    from lloco_core.training.checkpoints import CompressorStore

    root = tmp_path / "store"
    shutil.copytree(trained_compressor.root, root)
    store = Store(str(root))
    run = CompressorStore(store, CORPUS, trained_compressor.summary["compressor_key"])
    clean = verify(store, CORPUS)
    assert any(c.kind == "compressor" and c.path.endswith("model.safetensors") and c.problem is None for c in clean.files)
    weights = Path(run.prefix, "checkpoint", "model.safetensors")
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: only the checksum can tell
    weights.write_bytes(bytes(data))
    assert run.finished() is not None, "a listing cannot see a same-size flip"
    bad = verify(store, CORPUS, repair=True)
    assert [c.path for c in bad.files if c.problem] == [store.uri(str(weights))]
    assert run.finished() is None, "repaired: the compressor is no longer finished, the next run trains it again"
