"""A synthetic long-document QA benchmark: records whose facts are spread over several segments.

Each document is one record of `fields` facts in a fixed order, one sentence per fact:

    The harbor of this record is cedar. The lantern of this record is moss. ...

and every question asks for one field (`What is the harbor?` -> `cedar`). Each field has its own
set of `values` words (disjoint across fields) and every document draws one uniformly and
independently per field, so the question says which set the answer is in and only the document
says which member: a model without the context is at chance, `1 / values` exact match, however
well it knows the sets. (Per-field sets also let a tiny model learn in minutes on a CPU: knowing
which set to answer from is learnable from the question alone, and reading the document then
only has to pick the member.) The facts of one document are spread evenly over its segments, so answering needs the summaries of
every segment, not just the first or the last one.

Train and held-out splits are split by document (no held-out document is seen in training). The
files are what the pipeline reads: a corpus JSONL for `lloco ingest` (`id`, `text`, `metadata`),
and QA JSONL files for train-compressor/finetune/evaluate (plain `qa` task, one answer word).

Each fact is 8 words-or-periods. With a tokenizer that keeps every word of the benchmark whole
(a small BPE trained on `tokenizer_texts`, as the demo and tests build), a fact is exactly 8
tokens and `segment_length` (8 x facts per segment) puts the same facts in every segment. With any
other tokenizer the benchmark still works as a smoke test; facts then straddle segment borders.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

FIELDS: tuple[str, ...] = (
    "harbor", "lantern", "orchard", "bridge", "tower", "garden", "market", "chapel", "mill", "forge", "quarry", "meadow",
    "beacon", "cellar", "granary", "kennel", "library", "pantry", "stable", "vault", "wharf", "armory", "bakery", "cistern",
)  # fmt: skip
VALUES: tuple[str, ...] = (
    "amber", "azure", "basil", "birch", "bronze", "cedar", "chalk", "cherry", "cobalt", "copper", "coral", "cotton", "crimson", "cypress", "denim", "ebony",
    "emerald", "fern", "flint", "garnet", "ginger", "granite", "hazel", "indigo", "ivory", "jade", "jasmine", "juniper", "lemon", "lilac", "linen", "maple",
    "marble", "mint", "moss", "nickel", "oak", "ochre", "olive", "onyx", "opal", "orchid", "pearl", "pepper", "pine", "plum", "quartz", "raven",
    "rose", "ruby", "rust", "saffron", "sage", "salt", "sand", "silk", "slate", "steel", "tin", "topaz", "umber", "velvet", "walnut", "willow",
    "badger", "beaver", "bison", "camel", "cobra", "condor", "coyote", "crane", "eagle", "falcon", "ferret", "finch", "gecko", "heron", "hornet", "jackal",
    "lemur", "lynx", "magpie", "marten", "moose", "otter", "panda", "parrot", "pelican", "puffin", "python", "rabbit", "salmon", "shark", "sparrow", "tiger",
    "anchor", "anvil", "barrel", "basket", "goblet", "bottle", "bucket", "candle", "chisel", "compass", "cradle", "drum", "feather", "funnel", "hammer", "helmet",
    "kettle", "ladder", "quiver", "mirror", "needle", "paddle", "pillow", "saddle", "shovel", "spindle", "trumpet", "tunnel", "violin", "wagon", "whistle", "wreath",
)  # fmt: skip
FACT = "The {field} of this record is {value}."
QUESTION = "What is the {field}?"
TOKENS_PER_FACT = 8
"""Words and periods per fact: its token count under a tokenizer that keeps each word whole."""


class SyntheticConfig(BaseModel):
    """Size and difficulty of the benchmark; the seed makes every file reproducible."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    train_documents: int = Field(default=1000, ge=1, le=1_000_000, description="Documents whose questions are for training.")
    heldout_documents: int = Field(default=100, ge=1, le=1_000_000, description="Documents whose questions are only for evaluation.")
    finetune_documents: int = Field(default=100, ge=1, le=1_000_000, description="Train documents whose questions make the smaller finetune.jsonl (the per-corpus LoRA adapter needs few).")
    segments: int = Field(default=3, ge=1, le=24, description="Segments per document (at the recommended segment_length).")
    facts_per_segment: int = Field(default=4, ge=1, le=24, description="Facts in each segment.")
    values: int = Field(default=8, ge=2, le=len(VALUES), description="Possible values of each field, a set of its own (chance = 1 / values).")
    seed: int = Field(default=0, description="Seeds the values of every document and the order of the held-out questions.")

    @model_validator(mode="after")
    def _fields_fit(self) -> SyntheticConfig:
        if self.fields > len(FIELDS):
            raise ValueError(f"segments x facts_per_segment = {self.fields} exceeds the {len(FIELDS)} field names of the benchmark")
        if self.fields * self.values > len(VALUES):
            raise ValueError(f"{self.fields} fields x {self.values} values each exceeds the {len(VALUES)} value words of the benchmark")
        return self

    def field_values(self) -> dict[str, tuple[str, ...]]:
        """Each field's own value words (disjoint sets, in document order of the fields)."""
        return {f: VALUES[i * self.values : (i + 1) * self.values] for i, f in enumerate(FIELDS[: self.fields])}

    @property
    def fields(self) -> int:
        return self.segments * self.facts_per_segment

    @property
    def segment_length(self) -> int:
        """Tokens per segment that put exactly `facts_per_segment` facts in each segment (word-level tokenizer)."""
        return TOKENS_PER_FACT * self.facts_per_segment

    @property
    def chance(self) -> float:
        """Exact match of a model that never reads the document but knows each field's values (uniform, independent)."""
        return 1.0 / self.values


@dataclass(frozen=True)
class SyntheticDocument:
    doc_id: str
    split: str  # "train" or "heldout"
    facts: dict[str, str]  # field -> value, in document order

    @property
    def text(self) -> str:
        return " ".join(FACT.format(field=f, value=v) for f, v in self.facts.items())

    def questions(self) -> list[dict]:
        """One QA line per field: the plain `qa` task, one answer word."""
        return [
            {"id": f"{self.doc_id}-{field}", "doc_id": self.doc_id, "task": "qa", "question": QUESTION.format(field=field), "answers": [value]}
            for field, value in self.facts.items()
        ]


def make_documents(config: SyntheticConfig) -> list[SyntheticDocument]:
    """Train documents first, then held-out ones; each value drawn independently per field."""
    rng = random.Random(config.seed)
    choices = config.field_values()
    docs = []
    for split, count in (("train", config.train_documents), ("heldout", config.heldout_documents)):
        for i in range(count):
            docs.append(SyntheticDocument(f"syn-{split}-{i:06d}", split, {f: rng.choice(values) for f, values in choices.items()}))
    return docs


@dataclass(frozen=True)
class BenchmarkFiles:
    corpus: Path  # JSONL for `lloco ingest`: every document, train and held-out
    train_qa: Path  # QA JSONL of the train documents (compressor training)
    finetune_qa: Path  # QA JSONL of the first `finetune_documents` train documents (the LoRA finetune)
    heldout_qa: Path  # QA JSONL of the held-out documents (evaluate), questions shuffled
    config: SyntheticConfig

    def as_dict(self) -> dict:
        files = {name: getattr(self, name).name for name in ("corpus", "train_qa", "finetune_qa", "heldout_qa")}
        return {**files, "chance": self.config.chance, "segment_length": self.config.segment_length, **self.config.model_dump()}


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(path)


def write_benchmark(folder: str | Path, config: SyntheticConfig | None = None) -> BenchmarkFiles:
    """Write corpus.jsonl, train.jsonl, finetune.jsonl, heldout.jsonl (and benchmark.json describing them) to `folder`.

    Held-out questions are shuffled (seeded), so an evaluation `limit` takes a sample across
    documents and fields rather than the first documents only.
    """
    config = config or SyntheticConfig()
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    docs = make_documents(config)
    files = BenchmarkFiles(out / "corpus.jsonl", out / "train.jsonl", out / "finetune.jsonl", out / "heldout.jsonl", config)
    _write_jsonl(files.corpus, [{"id": d.doc_id, "text": d.text, "metadata": {"split": d.split}} for d in docs])
    train = [d for d in docs if d.split == "train"]
    _write_jsonl(files.train_qa, [q for d in train for q in d.questions()])
    _write_jsonl(files.finetune_qa, [q for d in train[: config.finetune_documents] for q in d.questions()])
    heldout = [q for d in docs if d.split == "heldout" for q in d.questions()]
    random.Random(config.seed + 1).shuffle(heldout)
    _write_jsonl(files.heldout_qa, heldout)
    (out / "benchmark.json").write_text(json.dumps(files.as_dict(), indent=1, sort_keys=True), encoding="utf-8")
    return files


def tokenizer_texts(config: SyntheticConfig | None = None, documents: int = 200) -> list[str]:
    """Text to train a small tokenizer on so that every word of the benchmark is one token: sample
    documents plus every question (the words of the prompt templates come from the caller)."""
    config = config or SyntheticConfig()
    sample = make_documents(config.model_copy(update={"train_documents": documents, "heldout_documents": 1}))
    questions = [QUESTION.format(field=f) for f in FIELDS[: config.fields]]
    return [d.text for d in sample] + questions * 20 + [" ".join(VALUES[: config.fields * config.values])] * 20


def build_base_model(folder: str | Path, config: SyntheticConfig | None = None, hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4, seed: int = 0) -> Path:
    """A tiny random-init LLaMA base model whose tokenizer keeps every benchmark word whole (trained on
    sample documents, questions and the rendered `qa` prompt template): what the demo and the tests
    turn into an AutoCompressor. A user would start from their own model instead."""
    from lloco_core.model.tiny import build_tiny_llama
    from lloco_core.qa.prompts import default_prompts

    config = config or SyntheticConfig()
    template = default_prompts().for_task("qa")
    prompts = [template.render(QUESTION.format(field=f)) for f in FIELDS[: config.fields]]
    answers = [template.answer_text(v) for v in VALUES[: config.fields * config.values]]
    return build_tiny_llama(folder, hidden_size=hidden_size, num_layers=num_layers, num_heads=num_heads, vocab_size=1000, texts=tokenizer_texts(config) + (prompts + answers) * 5, seed=seed)


DEMO_BENCHMARK = SyntheticConfig(train_documents=4000, heldout_documents=40, finetune_documents=100, segments=3, facts_per_segment=2, values=8, seed=0)
"""The benchmark `make demo` and the quality tests run: 3 segments of 16 tokens, 6 facts, 8 values per field (chance 1/8)."""

DEMO_COMPRESSOR = dict(
    summary_length=2, segment_length=DEMO_BENCHMARK.segment_length, lm_weight=0.0, qa_weight=1.0, qa_documents=32, gradient_segments=DEMO_BENCHMARK.segments,
    learning_rate=2e-3, warmup_steps=50, max_steps=600, zero_stage=0, checkpoint_every=200, seed=0,
)  # fmt: skip
"""Compressor-training settings for the tiny demo base model on DEMO_BENCHMARK: 16 tokens -> 2 summary
vectors per segment (8x), gradients through every segment's summaries, constant learning rate after
warm-up, bounded by steps. Measured (README): held-out exact match jumps from chance after ~200
steps and again after ~450; 600 steps reached 87% (a cosine schedule over 400 steps: 71%)."""


def main(argv: list[str] | None = None) -> int:
    """`python -m lloco_core.qa.synthetic FOLDER [--base-model]`: the demo's benchmark files (and a
    tiny random base model in FOLDER/base-model whose tokenizer keeps the benchmark's words whole)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m lloco_core.qa.synthetic", description=main.__doc__)
    parser.add_argument("folder", help="where corpus.jsonl, train.jsonl, finetune.jsonl, heldout.jsonl and benchmark.json go")
    parser.add_argument("--base-model", action="store_true", help="also build the tiny random LLaMA base model the demo trains (FOLDER/base-model)")
    args = parser.parse_args(argv)
    files = write_benchmark(args.folder, DEMO_BENCHMARK)
    result = files.as_dict()
    if args.base_model:
        result["base_model"] = str(build_base_model(Path(args.folder) / "base-model", DEMO_BENCHMARK))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
