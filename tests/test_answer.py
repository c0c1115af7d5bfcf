"""Answering from summary vectors with the corpus adapter: cached == uncached, batched == single,
the adapter changes outputs, the context layout holds (a named document's first segments, the
corpus's top-k), and bad input fails clearly."""

from __future__ import annotations

import json

import pytest

from lloco.cli import main
from lloco_core.errors import InputError
from lloco_core.qa.answer import Answerer, Question, answer
from lloco_core.qa.config import AskConfig, GenerationConfig
from tests.adapter_helpers import compressed_corpus, corpus_with_adapter, save_adapter


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tiny_model):
    """Corpus `c`: three documents (11 segments and two short ones), compressed, with one adapter."""
    tmp = tmp_path_factory.mktemp("answer")
    return corpus_with_adapter(tmp, tiny_model)


QUESTIONS = [
    Question("Who holds the silver lantern by the river?", "alpha"),
    Question("What did the captain write in the letter?", "beta"),
    Question("Where is the golden tower?", "gamma"),
    Question("Which bridge leads north?", None),
]


@pytest.fixture(scope="module")
def answerer(corpus):
    root, _ = corpus
    return Answerer(GenerationConfig(root=root, corpus="c", device="cpu", max_new_tokens=12, window=512, max_segments=4, batch_size=4))


def test_kv_cached_generation_equals_uncached(answerer):
    prepared = [answerer.prepare(q) for q in QUESTIONS]
    cached = answerer.generate(prepared, use_cache=True)
    uncached = answerer.generate(prepared, use_cache=False)
    assert [g.token_ids for g in cached] == [g.token_ids for g in uncached]
    assert any(len(g.token_ids) > 3 for g in cached)


def test_batched_generation_equals_one_at_a_time(answerer):
    batched = answerer.answer(QUESTIONS)
    single = [answerer.answer([q])[0] for q in QUESTIONS]
    assert len({a.prompt_tokens for a in batched}) > 1  # rows of different length: padding is exercised
    assert [a.token_ids for a in batched] == [a.token_ids for a in single]
    assert [a.answer for a in batched] == [a.answer for a in single]


def test_adapter_is_applied(corpus, answerer):
    root, _ = corpus
    base = Answerer(GenerationConfig(root=root, corpus="c", device="cpu", max_new_tokens=12, window=512, max_segments=4, no_adapter=True, model=answerer.model_path))
    with_adapter = answerer.answer(QUESTIONS)
    without = base.answer(QUESTIONS)
    assert answerer.adapter is not None and answerer.adapter.key == "ad-test"
    assert all(a.adapter_key == "ad-test" for a in with_adapter) and all(a.adapter_key is None for a in without)
    assert [a.token_ids for a in with_adapter] != [a.token_ids for a in without]
    # switching the adapter off inside the loaded PEFT model equals loading the base model alone
    prepared = [base.prepare(q) for q in QUESTIONS]
    assert [g.token_ids for g in answerer.generate(prepared, adapter=False)] == [a.token_ids for a in without]


def test_context_layout(answerer):
    long_doc = answerer.embeddings.read_document("alpha")
    assert len(long_doc.segment_index) > 4  # alpha has more segments than max_segments=4
    q = QUESTIONS[0]
    ids = answerer.render(q)
    assert answerer.tokenizer.bos_token_id not in ids  # the paper's protocol: no BOS
    result = answerer.answer([q])[0]
    assert [k.segment_index for k in result.segments] == [0, 1, 2, 3]  # its first segments, in order
    assert (result.summary_vectors, result.prompt_tokens) == (4 * answerer.summary_length, len(ids))
    assert result.as_dict()["documents"] == [{"doc_id": "alpha", "segments": [[0, 3]], "segments_total": len(long_doc.segment_index)}]
    short = answerer.answer([QUESTIONS[2]])[0]  # gamma has fewer: every segment, in order
    assert [k.segment_index for k in short.segments] == list(range(len(answerer.embeddings.read_document("gamma").segment_index)))
    corpus_wide = answerer.answer([QUESTIONS[3]])[0]
    assert corpus_wide.doc_id is None and len(corpus_wide.segments) == answerer.top_k == 5
    assert corpus_wide.summary_vectors == 5 * answerer.summary_length
    assert result.latency_s > 0 and result.generated_tokens == len(result.token_ids)


def test_bad_input_is_a_clear_error(corpus, root, tmp_path, tiny_model):
    good_root, _ = corpus
    with pytest.raises(InputError, match="corpus 'nope' does not exist"):
        answer(AskConfig(root=good_root, corpus="nope", question="q?", device="cpu"))
    with pytest.raises(InputError, match="document 'missing' is not in corpus 'c'"):
        answer(AskConfig(root=good_root, corpus="c", doc_id="missing", question="q?", device="cpu", max_new_tokens=2))
    with pytest.raises(InputError, match="no finished adapter 'other'"):
        answer(AskConfig(root=good_root, corpus="c", adapter_key="other", question="q?", device="cpu"))
    compressed_corpus(tmp_path, tiny_model, root, corpus="bare")  # compressed, never finetuned
    save_adapter(tiny_model, root, corpus="bare", key="half", publish=False)  # a run that never finished
    with pytest.raises(InputError, match="no finished adapter 'half'"):
        answer(AskConfig(root=root, corpus="bare", adapter_key="half", question="q?", device="cpu"))
    with pytest.raises(InputError, match="no finished adapter"):
        answer(AskConfig(root=root, corpus="bare", adapter_key="any", model=str(tiny_model), question="q?", device="cpu"))
    with pytest.raises(InputError, match="pass --model"):
        answer(AskConfig(root=root, corpus="bare", question="q?", device="cpu"))


def test_mistyped_document_fails_before_the_decoder_loads_and_names_the_near_ids(corpus, tmp_path):
    """`--doc hamlet` where the folder made `tragedies/hamlet`: the error says which id was meant,
    and comes before the model is read (here the model folder does not even exist)."""
    root, _ = corpus
    no_model = str(tmp_path / "no-model")
    with pytest.raises(InputError, match=r"document 'alpah' is not in corpus 'c' \(did you mean 'alpha'\?\)"):
        answer(AskConfig(root=root, corpus="c", doc_id="alpah", model=no_model, question="q?", device="cpu"))
    with pytest.raises(InputError, match=r"document 'plays/beta' is not in corpus 'c' \(did you mean 'beta'\?\)"):
        answer(AskConfig(root=root, corpus="c", doc_id="plays/beta", model=no_model, question="q?", device="cpu"))
    with pytest.raises(InputError, match=r"document 'zzz' is not in corpus 'c'$"):
        answer(AskConfig(root=root, corpus="c", doc_id="zzz", model=no_model, question="q?", device="cpu"))


def test_a_corrupt_shard_is_left_out_of_corpus_wide_questions_and_named(corpus, tmp_path, tiny_model):
    """One corrupt shard made every corpus-wide `ask` fail; export already answered from the rest
    and listed the file. Now ask does the same; a question on a document of that shard still fails."""
    import shutil
    from pathlib import Path

    import pyarrow.parquet as pq

    from lloco_core.config import CompressConfig, IngestConfig
    from lloco_core.errors import StoreError
    from lloco_core.model.compress import compress
    from lloco_core.store.documents import ingest
    from tests.conftest import make_text

    root = str(tmp_path / "store")
    shutil.copytree(corpus[0], root)
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "delta.txt").write_text(make_text(9, 80))
    ingest(IngestConfig(root=root, corpus="c", source=str(tmp_path / "more")))
    compress(CompressConfig(root=root, corpus="c", model=str(tiny_model), device="cpu"))  # delta: a second shard
    shards = sorted(Path(root).glob("c/embeddings/*/shards/*.parquet"))
    bad = next(p for p in shards if "alpha" in pq.read_table(p, columns=["doc_id"])["doc_id"].to_pylist())
    data = bytearray(bad.read_bytes())
    data[200:232] = bytes(b ^ 0xFF for b in data[200:232])  # same size: only the checksum tells
    bad.write_bytes(data)
    settings = dict(root=root, corpus="c", device="cpu", max_new_tokens=2)
    result = answer(AskConfig(question="Which bridge leads north?", top_k=3, **settings)).as_dict()
    assert [d["doc_id"] for d in result["documents"]] == ["delta"]
    assert [p["path"] for p in result["problems"]] == [str(bad)] and "sha256" in result["problems"][0]["problem"]
    with pytest.raises(StoreError, match=str(bad)):
        answer(AskConfig(question="q?", doc_id="alpha", **settings))
    other = next(p for p in shards if p != bad)
    other.write_bytes(other.read_bytes()[:-8] + b"\0" * 8)  # every document's shard unusable: nothing to answer from
    with pytest.raises(StoreError):
        answer(AskConfig(question="Which bridge?", top_k=3, **settings))


def test_cli_ask_prints_json_answer(corpus, capsys):
    root, encoder_key = corpus
    code = main(["ask", "Who holds the silver lantern?", "--corpus", "c", "--root", root, "--doc", "beta", "--max-new-tokens", "5", "--device", "cpu", "--export-embeds"])
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["adapter_key"] == "ad-test" and result["doc_id"] == "beta" and result["prompt_set"] == "lloco-paper"
    assert result["generated_tokens"] <= 5 and result["documents"][0]["doc_id"] == "beta" and result["positions"]["prompt_tokens"] > 0
    assert "segments" not in result and "token_ids" not in result  # compact unless --verbose
    assert result["export"]["shape"][0] == result["positions"]["total"] and result["export"]["prompt_embeds"].endswith(".safetensors")
    assert main(["ask", "q?", "--corpus", "c", "--root", root, "--doc", "nope", "--device", "cpu"]) == 2
    assert "document 'nope' is not in corpus 'c'" in capsys.readouterr().err


def test_decoder_dtype(corpus):
    import torch

    root, _ = corpus
    half = Answerer(GenerationConfig(root=root, corpus="c", device="cpu", dtype="float16", max_new_tokens=3))
    prepared = half.prepare(QUESTIONS[2])
    assert half.model.dtype == torch.float16 and prepared.embeds.dtype == torch.float16  # summaries cast as the paper's inference does
    assert half.generate([prepared])[0].token_ids
