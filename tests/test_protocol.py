"""Golden decoder inputs: lloco feeds the decoder exactly what the official LLoCO code
(jeffreysijuntan/lloco: finetune_quality.py, finetune_scrolls.py) feeds it.

The expected prompts below are the official templates written out by hand, tokenized with
`add_special_tokens=False` and no BOS; the answer targets are written as that code writes them
("B. <option text>" for QuALITY, the reference answer otherwise), then EOS. `ask --export-embeds`
must write `[stored summaries ; embed(those ids)]`, and an adapter trained with lloco's earlier
prompt set (format 1 `prompts.json`) must still be prompted the way it was trained.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lloco.cli import main
from lloco_core.model.autocompressor import load_tokenizer
from lloco_core.model.decoder import encode_request
from lloco_core.qa.answer import Answerer, Question
from lloco_core.qa.config import GenerationConfig
from lloco_core.qa.dataset import QAItem
from lloco_core.qa.prompts import PromptSet, default_prompts, legacy_prompts
from lloco_core.qa.serving import TENSOR_KEY
from lloco_core.store.embeddings import EmbeddingStore
from lloco_core.store.storage import Store
from tests.adapter_helpers import corpus_with_adapter

QUALITY_QUESTION = "Why does the captain leave the harbor?"
QUALITY_OPTIONS = ["To find the king", "Because of the storm", "To sell silver", "He never leaves"]
QUALITY_PROMPT = (
    "You are provided a story from above. We will now give you a multiple-choice question with 4 possible answers "
    "(marked by A, B, C, D). Choose the best answer by writing its corresponding letter (either A, B, C, or D).\n"
    "Example question:\n"
    "Where is the capital of France?\n"
    "\n"
    "Choices:\n"
    "A. Berlin\n"
    "B. Paris\n"
    "C. London\n"
    "D. Tokyo\n"
    "Choose the best answer by writing its corresponding letter (either A, B, C, or D).\n"
    "\n"
    "Answer:\n"
    "B. Paris\n"
    "\n"
    "Question:\n"
    "Why does the captain leave the harbor?\n"
    "\n"
    "Choices:\n"
    "A. To find the king\n"
    "B. Because of the storm\n"
    "C. To sell silver\n"
    "D. He never leaves\n"
    "Choose the best answer by writing its corresponding letter (either A, B, C, or D).\n"
    "\n"
    "Answer:\n"
)
QUALITY_TARGET = "B. Because of the storm"

NQA_QUESTION = "Who carries the silver lantern?"
NQA_PROMPT = (
    "You are given a story from above, which can be either a novel or a movie script, and a question. "
    "Answer the question as concisely as you can, using a single phrase if possible.\n"
    "Question:Who carries the silver lantern?\n"
    "Answer:"
)
NQA_TARGET = "the merchant from the south"

V1_PROMPTS_JSON = json.dumps(
    {
        "templates": {
            "multiple_choice": {
                "answer_prefix": " ",
                "option_format": "({letter}) {text}",
                "task": "multiple_choice",
                "template": "Read the document above and answer the multiple-choice question. Reply with the letter of the correct option only.\n\nQuestion: {question}\n\nOptions:\n{options}\n\nAnswer:",
            },
            "qa": {
                "answer_prefix": " ",
                "option_format": "({letter}) {text}",
                "task": "qa",
                "template": "Answer the question about the document above as concisely as you can, using a single phrase if possible.\n\nQuestion: {question}\n\nAnswer:",
            },
            "query_summary": {
                "answer_prefix": " ",
                "option_format": "({letter}) {text}",
                "task": "query_summary",
                "template": "The document above is a long text. Answer the query by writing a summary of the relevant parts of the document in a few sentences.\n\nQuery: {question}\n\nSummary:",
            },
        },
        "version": 1,
    }
)
"""A `prompts.json` as lloco wrote it before the paper protocol (format 1, BOS first)."""


@pytest.mark.parametrize(
    ("task", "question", "options", "answer", "prompt", "target"),
    [
        ("quality", QUALITY_QUESTION, QUALITY_OPTIONS, "B", QUALITY_PROMPT, QUALITY_TARGET),
        ("narrativeqa", NQA_QUESTION, None, NQA_TARGET, NQA_PROMPT, NQA_TARGET),
    ],
    ids=["quality", "narrativeqa"],
)
def test_golden_prompt_and_answer_ids(tiny_model: Path, task: str, question: str, options, answer: str, prompt: str, target: str) -> None:
    tokenizer = load_tokenizer(str(tiny_model))
    expected_prompt = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    expected_answer = [*tokenizer(target, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]
    # training (a QA line) and inference (a question) render through the same function
    item = QAItem("q1", "doc", question, [answer], task, options)
    prompt_ids, answer_ids = encode_request(tokenizer, default_prompts(), item, answer=answer)
    assert prompt_ids == expected_prompt and answer_ids == expected_answer
    assert tokenizer.bos_token_id not in prompt_ids
    assert encode_request(tokenizer, default_prompts(), Question(question, "doc", task, options)) == (expected_prompt, [])
    if task == "quality":  # QA files with the older task name use the same template
        assert encode_request(tokenizer, default_prompts(), Question(question, "doc", "multiple_choice", options))[0] == expected_prompt


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> tuple[str, str]:
    return corpus_with_adapter(tmp_path_factory.mktemp("protocol"), tiny_model)


def test_export_embeds_is_summaries_then_embedded_prompt(corpus: tuple[str, str], tiny_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, encoder_key = corpus
    args = ["ask", NQA_QUESTION, "--corpus", "c", "--root", root, "--doc", "alpha", "--task", "narrativeqa", "--device", "cpu", "--max-new-tokens", "2", "--export-embeds"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    exported = load_file(result["export"]["prompt_embeds"])[TENSOR_KEY]

    tokenizer = load_tokenizer(str(tiny_model))
    ids = tokenizer(NQA_PROMPT, add_special_tokens=False)["input_ids"]
    stored = EmbeddingStore(Store(root), "c", encoder_key).read_document("alpha").summaries
    assert 4 < stored.shape[0] < 80  # every segment of alpha, in order
    answerer = Answerer(GenerationConfig(root=root, corpus="c", device="cpu"))
    embed = answerer.model.get_input_embeddings()
    expected = torch.cat([stored.reshape(-1, stored.shape[-1]).float(), embed(torch.tensor(ids))]).detach()
    assert torch.equal(exported, expected)
    assert result["positions"] == {"summary_vectors": stored.shape[0] * stored.shape[1], "prompt_tokens": len(ids), "total": expected.shape[0]}
    assert result["documents"] == [{"doc_id": "alpha", "segments": [[0, stored.shape[0] - 1]], "segments_total": stored.shape[0]}]


def test_old_adapter_prompts_load_and_render_as_trained(corpus: tuple[str, str], tiny_model: Path) -> None:
    root, _ = corpus
    old = PromptSet.from_json(V1_PROMPTS_JSON)
    assert (old.name, old.bos) == ("lloco-v1", True) and old == legacy_prompts()
    folder = Path(root) / "c" / "adapters" / "ad-test"
    current = (folder / "prompts.json").read_text()
    record = folder / "_commits" / "adapter.json"
    committed = record.read_text()
    (folder / "prompts.json").write_text(V1_PROMPTS_JSON)
    # an adapter as lloco wrote it before checksums: its record lists file names only
    record.write_text(json.dumps({"name": "adapter", "committed_ns": 1, "files": sorted(json.loads(committed)["files"])}))
    try:
        answerer = Answerer(GenerationConfig(root=root, corpus="c", device="cpu", max_new_tokens=2))
        assert answerer.prompts == old
        tokenizer = answerer.tokenizer
        old_text = "Answer the question about the document above as concisely as you can, using a single phrase if possible.\n\nQuestion: Who rides north?\n\nAnswer:"
        ids = answerer.render(Question(" Who rides north? ", "alpha", "narrativeqa"))  # any QA task reads the old `qa` template
        assert ids == [tokenizer.bos_token_id, *tokenizer(old_text, add_special_tokens=False)["input_ids"]]
        assert answerer.answer([Question("Who rides north?", "alpha")])[0].prompt_set == "lloco-v1"
    finally:
        (folder / "prompts.json").write_text(current)
        record.write_text(committed)
