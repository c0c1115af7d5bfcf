"""The synthetic long-document benchmark: files the pipeline reads, splits by document, facts in
every segment, its stated chance level."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from lloco_core.config import IngestConfig
from lloco_core.model.autocompressor import load_tokenizer
from lloco_core.model.segments import segment_document
from lloco_core.qa.dataset import load_qa
from lloco_core.qa.synthetic import FIELDS, SyntheticConfig, build_base_model, make_documents, write_benchmark
from lloco_core.store.documents import ingest

SMALL = SyntheticConfig(train_documents=30, heldout_documents=6, finetune_documents=5, segments=3, facts_per_segment=2, values=8, seed=3)


def test_files_are_what_ingest_finetune_and_evaluate_read(tmp_path: Path) -> None:
    files = write_benchmark(tmp_path / "bench", SMALL)
    summary = ingest(IngestConfig(root=str(tmp_path / "store"), corpus="syn", source=str(files.corpus)))
    assert summary.documents_added == 36 and not summary.skipped
    train, tune, held = (load_qa(str(p)) for p in (files.train_qa, files.finetune_qa, files.heldout_qa))
    assert len(train.items) == 30 * SMALL.fields and len(held.items) == 6 * SMALL.fields and len(tune.items) == 5 * SMALL.fields
    assert {i.task for i in train.items + held.items} == {"qa"} and all(len(i.answers) == 1 for i in held.items)
    assert not train.doc_ids & held.doc_ids and tune.doc_ids <= train.doc_ids  # split by document
    described = json.loads((tmp_path / "bench" / "benchmark.json").read_text())
    assert described["chance"] == pytest.approx(1 / 8) and described["heldout_qa"] == "heldout.jsonl"
    again = write_benchmark(tmp_path / "again", SMALL)
    assert again.corpus.read_bytes() == files.corpus.read_bytes() and again.heldout_qa.read_bytes() == files.heldout_qa.read_bytes()


def test_each_answer_is_one_fact_of_its_own_document_and_values_are_uniform_per_field() -> None:
    config = SMALL.model_copy(update={"train_documents": 4000})
    docs = make_documents(config)
    sets = config.field_values()
    assert all(not set(a) & set(b) for f, a in sets.items() for g, b in sets.items() if f != g)  # each field its own words
    for doc in docs[:50]:
        for q in doc.questions():
            field = q["question"].removeprefix("What is the ").removesuffix("?")
            assert f"The {field} of this record is {q['answers'][0]}." in doc.text
    counts = Counter(d.facts[FIELDS[0]] for d in docs)
    assert set(counts) == set(sets[FIELDS[0]]) and max(counts.values()) / min(counts.values()) < 1.3  # uniform: chance is 1/values


def test_facts_are_spread_over_every_segment(tmp_path: Path) -> None:
    base = build_base_model(tmp_path / "base", SMALL)
    tokenizer = load_tokenizer(str(base))
    for doc in make_documents(SMALL)[:20]:
        segments = segment_document(tokenizer, doc.text, SMALL.segment_length)
        assert len(segments) == SMALL.segments  # a word-level tokenizer: every fact is 8 tokens
        for i, segment in enumerate(segments):
            fields = FIELDS[i * SMALL.facts_per_segment : (i + 1) * SMALL.facts_per_segment]
            assert all(f" {f} of this record is " in segment.text for f in fields)


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="exceeds the 24 field names"):
        SyntheticConfig(segments=13, facts_per_segment=2)
    with pytest.raises(ValueError, match="values each exceeds"):
        SyntheticConfig(segments=6, facts_per_segment=2, values=11)
