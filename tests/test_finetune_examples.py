"""Examples: label masking per template, the first (up to 80) segments of a document in order,
prompts saved as JSON, CLI args."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lloco_core.model.autocompressor import load_tokenizer
from lloco_core.model.decoder import IGNORE_INDEX, build_decoder_inputs, load_decoder, pad_batch
from lloco_core.qa.dataset import QAItem
from lloco_core.qa.prompts import PromptSet, default_prompts, legacy_prompts
from lloco_core.store.embeddings import EmbeddingStore, pick_encoder
from lloco_core.store.storage import Store
from lloco_core.training.examples import build_examples, encode_example, example_summaries, label_vector
from lloco_core.training.finetune import config_from_args
from tasks.finetune import finetune_command
from tests.finetune_helpers import make_corpus

ITEMS = [
    QAItem("a", "lighthouse_keeper", "Who was the last keeper?", ["Alan Petrie"], "qa"),
    QAItem("b", "lighthouse_keeper", "How often does it flash?", ["B"], "multiple_choice", ["Every minute", "Every ten seconds"]),
    QAItem("c", "lab_report_yeast", "Summarise the errors.", ["The bath varied by 1.5 degrees."], "query_summary"),
]
TARGETS = {"qa": "Alan Petrie", "multiple_choice": "B. Every ten seconds", "query_summary": "The bath varied by 1.5 degrees."}


@pytest.mark.parametrize("item", ITEMS, ids=lambda i: i.task)
def test_only_answer_tokens_and_eos_carry_labels(tiny_model: Path, item: QAItem) -> None:
    tokenizer = load_tokenizer(str(tiny_model))
    prompts = default_prompts()
    prompt_ids, answer_ids = encode_example(item, prompts, tokenizer, 512)
    assert tokenizer.bos_token_id not in prompt_ids and answer_ids[-1] == tokenizer.eos_token_id
    assert answer_ids == [*tokenizer(TARGETS[item.task], add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]
    n_soft = 3 * 4
    labels = label_vector(n_soft, len(prompt_ids), answer_ids)
    assert len(labels) == n_soft + len(prompt_ids) + len(answer_ids)
    labelled = (labels != IGNORE_INDEX).nonzero().flatten().tolist()
    assert labelled == list(range(n_soft + len(prompt_ids), len(labels)))  # soft prompt and prompt never
    assert labels[labelled].tolist() == answer_ids
    assert tokenizer.decode(answer_ids[:-1]) == TARGETS[item.task]
    legacy_prompt, legacy_answer = encode_example(item, legacy_prompts(), tokenizer, 512)  # the earlier set: BOS first, " B"
    assert legacy_prompt[0] == tokenizer.bos_token_id and tokenizer.decode(legacy_answer[:-1]) == " " + item.answers[0]


def test_batch_padding_keeps_labels_aligned(tiny_model: Path) -> None:
    model = load_decoder(str(tiny_model), None, "cpu")
    a = build_decoder_inputs(model, torch.randn(2, 4, 64), [1, 5, 6])
    b = build_decoder_inputs(model, None, [1, 7])
    batch = pad_batch([a, b], [label_vector(8, 3, []), torch.tensor([IGNORE_INDEX, 9])], padding_side="right")
    assert batch.inputs_embeds.shape == (2, 11, 64)
    assert batch.attention_mask.sum(1).tolist() == [11, 2]
    assert batch.labels[1].tolist() == [IGNORE_INDEX, 9] + [IGNORE_INDEX] * 9


def test_examples_read_the_first_segments_of_their_document_in_order(tiny_model: Path, tmp_path: Path) -> None:
    root = str(tmp_path / "store")
    make_corpus(root, tiny_model, tmp_path)
    store = Store(root)
    embeddings = EmbeddingStore(store, "c", pick_encoder(store, "c", None))
    index = embeddings.current_index()
    tokenizer = load_tokenizer(str(tiny_model))
    item = QAItem("q", "lighthouse_keeper", "Which schooner struck the Skarra reef in a gale?", ["Marigold"], "qa")
    texts = embeddings.read_document("lighthouse_keeper").text
    assert len(texts) > 3
    (full,), documents = build_examples([item], embeddings, index, tokenizer, default_prompts(), 512)
    assert full.segments == list(range(len(texts)))  # every segment (fewer than 80), in order
    (capped,), _ = build_examples([item], embeddings, index, tokenizer, default_prompts(), 512, max_segments=3)
    assert capped.segments == [0, 1, 2]  # the official code truncates a document: its first segments
    assert example_summaries(capped, documents).shape == (3, 4, 64)
    assert torch.equal(example_summaries(capped, documents), documents["lighthouse_keeper"].summaries[:3])


def test_prompts_round_trip_json() -> None:
    prompts = default_prompts()
    assert (prompts.name, prompts.bos) == ("lloco-paper", False)
    assert set(prompts.templates) == {"qa", "quality", "qasper", "narrativeqa", "qmsum", "hotpotqa"}
    assert PromptSet.from_json(prompts.to_json()) == prompts
    assert prompts.template_name("multiple_choice") == "quality" and prompts.template_name("query_summary") == "qmsum"
    rendered = prompts.for_task("multiple_choice").render("Which?", ["x", "y"])
    assert "Choices:\nA. x\nB. y\nChoose the best answer" in rendered and rendered.endswith("Answer:\n")
    legacy = legacy_prompts()
    assert PromptSet.from_json(legacy.to_json()) == legacy
    assert legacy.template_name("quality") == "multiple_choice" and legacy.template_name("narrativeqa") == "qa"
    assert "(A) x\n(B) y" in legacy.for_task("quality").render("Which?", ["x", "y"])


def test_task_command_round_trips_the_config() -> None:
    from lloco_core.training.finetune import FinetuneConfig

    config = FinetuneConfig(corpus="c", qa="q.jsonl", model="m", root="/tmp/r", zero_stage=1, target_modules=["q_proj", "v_proj"], bf16=False, holdout=0.5, prompt_set="lloco-v1")
    command = finetune_command(config)
    assert command[1:3] == ["-m", "lloco_core.training.finetune"]
    assert config_from_args(command[3:]) == config
    assert finetune_command(config, "deepspeed --num_gpus 2")[:4] == ["deepspeed", "--num_gpus", "2", "-m"]
    assert config_from_args(["--corpus", "c", "--qa", "q", "--model", "m", "--zero-stage", "3", "--target-modules", "q_proj,o_proj"]).zero_stage == 3
