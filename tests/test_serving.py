"""The exported prompt embeddings are the complete decoder input: generating from the file alone
(with the adapter) gives the same answer as `answer`."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from lloco_core.qa.answer import Answerer, Question, generate_batch
from lloco_core.qa.config import AskConfig
from lloco_core.qa.serving import TENSOR_KEY, export_prompt_embeds
from tests.adapter_helpers import corpus_with_adapter


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_model):
    tmp = tmp_path_factory.mktemp("serving")
    return corpus_with_adapter(tmp, tiny_model)[0]


def test_export_is_a_seq_by_hidden_tensor_beside_the_adapter(setup):
    config = AskConfig(root=setup, corpus="c", question="Who keeps the silver lantern?", doc_id="alpha", device="cpu", max_new_tokens=8, max_segments=3)
    answerer = Answerer(config)
    result = export_prompt_embeds(config, answerer=answerer)
    path = result["prompt_embeds"]
    assert "/adapters/ad-test/requests/" in path and path.endswith(".safetensors")
    tensor = load_file(path)[TENSOR_KEY]
    assert tensor.dim() == 2 and list(tensor.shape) == result["shape"]
    assert tensor.shape[1] == answerer.model.config.hidden_size
    assert tensor.shape[0] == 3 * answerer.summary_length + len(answerer.render(Question(config.question, "alpha")))
    with safe_open(path, "pt") as f:
        meta = f.metadata()
    assert meta["adapter_key"] == "ad-test" and json.loads(meta["segments"]) == [["alpha", 0], ["alpha", 1], ["alpha", 2]]
    assert result["documents"][0]["segments"] == [[0, 2]] and result["summary_vectors"] == 3 * answerer.summary_length
    assert "--enable-prompt-embeds" in result["serve"] and "--enable-lora" in result["serve"] and "ad-test=" in result["serve"]
    expected = answerer.answer([Question(config.question, "alpha")])[0]
    served = generate_batch(answerer.model, answerer.tokenizer, [tensor], 8)[0]
    assert served.token_ids == expected.token_ids


def test_export_to_a_given_path_without_adapter(setup, tmp_path, tiny_model):
    out = tmp_path / "req.safetensors"
    config = AskConfig(root=setup, corpus="c", question="Where?", doc_id="gamma", device="cpu", no_adapter=True, model=str(tiny_model))
    result = export_prompt_embeds(config, out=str(out))
    assert result["adapter_uri"] is None and "--enable-lora" not in result["serve"]
    assert load_file(str(out))[TENSOR_KEY].dtype == torch.float32
