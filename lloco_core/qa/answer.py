"""Answer questions from a compressed corpus: pick segments, feed their summary vectors and the
prompt to the decoder (with the corpus's LoRA adapter), generate with a KV cache.

The decoder input is `[ summary vectors in document order ; embed(prompt) ]`, built with the same
functions finetuning uses (`model/decoder.py`: `encode_request`, `document_segments`,
`build_decoder_inputs`), and the prompt is rendered with the prompt set saved beside the adapter.
A question that names its document reads that document's first segments (up to `max_segments`,
80 as in LLoCO); a corpus-wide question reads the `top_k` segments BM25 (or a dense retriever)
ranks best over the whole corpus. Requests are generated in batches (left padding, positions
counted over real tokens), greedy by default; each answer reports the segments it read (as
ranges), the decoder positions and the latency of its batch.
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from lloco_core.errors import InputError, StoreError
from lloco_core.model.autocompressor import load_tokenizer
from lloco_core.model.decoder import build_decoder_inputs, decoder_window, document_segments, encode_request, load_decoder, pad_batch
from lloco_core.qa.config import AskConfig, GenerationConfig
from lloco_core.qa.prompts import PromptSet, default_prompts
from lloco_core.qa.retrieval import SegmentKey, make_retriever, select_corpus_segments
from lloco_core.store.documents import DocumentTable
from lloco_core.store.embeddings import EmbeddingStore, pick_encoder
from lloco_core.store.storage import Store
from lloco_core.training.adapters import AdapterInfo, resolve_adapter

DEFAULT_TOP_K = 5
"""Segments a corpus-wide question reads unless told otherwise (`AskConfig.top_k`)."""


@dataclass(frozen=True)
class Question:
    """One request: a question about one document (doc_id) or the whole corpus (doc_id None)."""

    question: str
    doc_id: str | None = None
    task: str = "qa"
    options: list[str] | None = None


def segment_ranges(indices: Sequence[int]) -> list[list[int]]:
    """Runs of consecutive segment indices as [first, last] pairs: [0, 1, 2, 7] -> [[0, 2], [7, 7]]."""
    ranges: list[list[int]] = []
    for i in indices:
        if ranges and i == ranges[-1][1] + 1:
            ranges[-1][1] = i
        else:
            ranges.append([i, i])
    return ranges


def documents_read(segments: Sequence[SegmentKey], totals: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """The documents a decoder input read, in reading order, each with its segment ranges (and how
    many segments it has, when known): a few lines however many segments were read."""
    order: dict[str, list[int]] = {}
    for key in segments:
        order.setdefault(key.doc_id, []).append(key.segment_index)
    out = []
    for doc_id, indices in order.items():
        entry: dict[str, Any] = {"doc_id": doc_id, "segments": segment_ranges(indices)}
        if totals and doc_id in totals:
            entry["segments_total"] = totals[doc_id]
        out.append(entry)
    return out


@dataclass
class Prepared:
    """One decoder input ready to generate from: `[summary vectors ; prompt tokens]`."""

    embeds: torch.Tensor  # [L, H]
    segments: list[SegmentKey]
    prompt_ids: list[int] = field(default_factory=list)
    segments_total: dict[str, int] = field(default_factory=dict)  # doc_id -> segments it has

    @property
    def positions(self) -> int:
        return int(self.embeds.shape[0])


@dataclass
class Answer:
    question: str
    answer: str
    doc_id: str | None
    task: str
    segments: list[SegmentKey]  # in the order the decoder read them
    summary_vectors: int  # decoder positions taken by summary vectors
    prompt_tokens: int  # decoder positions taken by prompt tokens
    generated_tokens: int
    latency_s: float  # wall time of the batch this answer was generated in (prefill + decode)
    adapter_key: str | None = None
    prompt_set: str = ""
    token_ids: list[int] = field(default_factory=list)
    segments_total: dict[str, int] = field(default_factory=dict)
    prompt_ids: list[int] = field(default_factory=list)
    problems: list[dict[str, str]] = field(default_factory=list)  # files left out (corrupt shards), as export lists them

    @property
    def positions(self) -> int:
        return self.summary_vectors + self.prompt_tokens

    def as_dict(self, verbose: bool = False) -> dict[str, Any]:
        """A compact summary (the answer, documents with segment ranges, positions, latency); with
        `verbose`, also every segment read, the prompt and the generated token ids."""
        out: dict[str, Any] = {
            "answer": self.answer,
            "question": self.question,
            "doc_id": self.doc_id,
            "task": self.task,
            "documents": documents_read(self.segments, self.segments_total),
            "positions": {"summary_vectors": self.summary_vectors, "prompt_tokens": self.prompt_tokens, "total": self.positions},
            "generated_tokens": self.generated_tokens,
            "latency_s": self.latency_s,
            "adapter_key": self.adapter_key,
            "prompt_set": self.prompt_set,
        }
        if self.problems:
            out["problems"] = self.problems
        if verbose:
            out["segments"] = [[k.doc_id, k.segment_index] for k in self.segments]
            out["prompt_ids"] = self.prompt_ids
            out["token_ids"] = self.token_ids
        return out


@dataclass
class Generated:
    token_ids: list[int]
    text: str
    latency_s: float


@torch.inference_mode()
def generate_batch(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    embeds: Sequence[torch.Tensor],
    max_new_tokens: int,
    *,
    use_cache: bool = True,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
) -> list[Generated]:
    """Generate from several `[L_i, H]` inputs at once (left-padded; transformers' `generate`).

    Each row stops at EOS; every row's latency is the batch's wall time, which is what a user of
    a batched request waits for.
    """
    batch = pad_batch(list(embeds), padding_side="left")
    sampling = dict(do_sample=True, temperature=temperature, top_p=top_p) if do_sample else dict(do_sample=False)
    device = batch.inputs_embeds.device
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    out = model.generate(
        inputs_embeds=batch.inputs_embeds,
        attention_mask=batch.attention_mask,
        max_new_tokens=max_new_tokens,
        use_cache=use_cache,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **sampling,
    )
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    latency = time.perf_counter() - started
    results = []
    for row in out.tolist():  # with inputs_embeds only, generate returns the new tokens alone
        if tokenizer.eos_token_id in row:
            row = row[: row.index(tokenizer.eos_token_id)]
        row = [t for t in row if t != tokenizer.pad_token_id]
        results.append(Generated(row, tokenizer.decode(row, skip_special_tokens=True).strip(), latency))
    return results


def resolve_generation(config: GenerationConfig, store: Store, context_corpus: str | None = None) -> tuple[AdapterInfo | None, str, str]:
    """Adapter (named, newest finished, or none), base model path and encoder key, without loading a
    model. The adapter comes from `config.corpus`, the embeddings from `context_corpus` (default the same)."""
    adapter = None if config.no_adapter else resolve_adapter(store, config.corpus, config.adapter_key, required=config.adapter_key is not None)
    model = config.model or (adapter.base_model if adapter else None)
    if not model:
        raise InputError(f"corpus {config.corpus!r}: no adapter to take the base model from; pass --model")
    encoder_key = pick_encoder(store, context_corpus or config.corpus, config.encoder_key or (adapter.encoder_key if adapter else None))
    return adapter, model, encoder_key


def did_you_mean(doc_id: str, known: Iterable[str]) -> str:
    """A hint for a mistyped document id: ids with the same last path part (a folder's doc_id keeps
    its subfolders: `tragedies/hamlet`, not `hamlet`), else the closest spellings."""
    known = sorted(known)
    name = doc_id.rsplit("/", 1)[-1]
    matches = [k for k in known if k.rsplit("/", 1)[-1] == name] or difflib.get_close_matches(doc_id, known, n=3)
    if not matches:
        return ""
    names = [repr(m) for m in matches[:3]]
    return f" (did you mean {', '.join(names[:-1]) + ' or ' if len(names) > 1 else ''}{names[-1]}?)"


class Answerer:
    """A loaded decoder (+ adapter) over one corpus's embeddings; answers many questions.

    The adapter (and its prompt set) comes from `config.corpus`; the documents and summaries from
    `context_corpus` when given (evaluation reads benchmark contexts from their own corpus, with
    the evaluated corpus's adapter), else from the same corpus. `top_k` segments are read for a
    question that names no document.
    """

    def __init__(self, config: GenerationConfig, context_corpus: str | None = None, top_k: int = DEFAULT_TOP_K, doc_ids: Iterable[str] = ()) -> None:
        self.config = config
        self.store = Store.from_config(config)
        self.corpus = context_corpus or config.corpus
        self.top_k = top_k
        self.documents = DocumentTable(self.store, self.corpus).current()
        if not self.documents:
            raise InputError(f"corpus {self.corpus!r} does not exist in {self.store.uri(self.store.root)} (it has no documents)")
        self.adapter, model, self.encoder_key = resolve_generation(config, self.store, self.corpus)
        self.model_path = model
        self.embeddings = EmbeddingStore(self.store, self.corpus, self.encoder_key)
        self.index = self.embeddings.current_index(self.documents)
        self.problems: list[dict[str, str]] = []  # store files left out of corpus-wide retrieval, by path
        for doc_id in dict.fromkeys(doc_ids):  # a mistyped --doc fails before the decoder loads (minutes for a 7B model)
            self.check_document(doc_id)
        adapter_files = self.adapter.files if self.adapter else None
        self.model = load_decoder(model, self.adapter.uri if self.adapter else None, config.device, config.dtype, config.endpoint_url, adapter_files)
        self.tokenizer = load_tokenizer(model)
        self.prompts: PromptSet = self.adapter.prompts if self.adapter else default_prompts()
        self.summary_length = int(self.model.config.summary_length)
        self.window = decoder_window(self.model, config.window)
        self.retriever = make_retriever(config.retriever, config.dense_model)

    # context -----------------------------------------------------------------------------------
    def render(self, q: Question) -> list[int]:
        """The prompt token ids of a question, as the adapter was trained to read them."""
        try:
            return encode_request(self.tokenizer, self.prompts, q)[0]
        except KeyError as err:
            raise InputError(str(err.args[0])) from None

    def check_document(self, doc_id: str) -> None:
        if doc_id not in self.documents:
            raise InputError(f"document {doc_id!r} is not in corpus {self.corpus!r}{did_you_mean(doc_id, self.documents)}")
        if doc_id not in self.index:
            raise InputError(f"document {doc_id!r} of corpus {self.corpus!r} has no committed embeddings under {self.encoder_key}: run `lloco compress`")

    def context(self, q: Question) -> tuple[list[SegmentKey], torch.Tensor | None, dict[str, int]]:
        """The segments to read (document order), their summaries [n, S, H], and each read
        document's segment count. A named document: its first `max_segments` segments; the corpus:
        the `top_k` best-ranked segments."""
        if q.doc_id is not None:
            self.check_document(q.doc_id)
            doc = self.embeddings.read_document(q.doc_id, index=self.index)
            chosen = document_segments(len(doc.segment_index), self.config.max_segments)
            return [SegmentKey(q.doc_id, doc.segment_index[i]) for i in chosen], doc.summaries[chosen], {q.doc_id: len(doc.segment_index)}
        docs, failure = {}, None
        for doc_id in sorted(self.index):
            try:
                docs[doc_id] = self.embeddings.read_document(doc_id, index=self.index)
            except StoreError as err:  # one corrupt shard must not stop every corpus-wide question
                failure = err
                problem = self.embeddings.left_out(self.index[doc_id][1], err).as_dict()
                if problem not in self.problems:
                    self.problems.append(problem)
        if failure is not None and not docs:
            raise failure  # nothing trustworthy left to retrieve from
        candidates = [(SegmentKey(d, s), t) for d, doc in docs.items() for s, t in zip(doc.segment_index, doc.text)]
        keys = select_corpus_segments(q.question, candidates, self.top_k, self.retriever)
        if not keys:
            return [], None, {}
        rows = [docs[k.doc_id].summaries[docs[k.doc_id].segment_index.index(k.segment_index)] for k in keys]
        return keys, torch.stack(rows), {k.doc_id: len(docs[k.doc_id].segment_index) for k in keys}

    def prepare(self, q: Question) -> Prepared:
        ids = self.render(q)
        segments, summaries, totals = self.context(q)
        return Prepared(build_decoder_inputs(self.model, summaries, ids), segments, ids, totals)

    # generation --------------------------------------------------------------------------------
    def generate(
        self, prepared: Sequence[Prepared], use_cache: bool = True, adapter: bool = True, on_batch: Callable[[int], None] | None = None
    ) -> list[Generated]:
        """Batches of `batch_size`; `adapter=False` runs the base weights of a PEFT model.
        `on_batch(n)` after each batch of n answers (evaluate's progress)."""
        cfg = self.config
        torch.manual_seed(cfg.seed)
        out: list[Generated] = []
        for start in range(0, len(prepared), cfg.batch_size):
            chunk = [p.embeds for p in prepared[start : start + cfg.batch_size]]
            kwargs = dict(use_cache=use_cache, do_sample=cfg.do_sample, temperature=cfg.temperature, top_p=cfg.top_p)
            if not adapter and hasattr(self.model, "disable_adapter"):
                with self.model.disable_adapter():
                    out.extend(generate_batch(self.model, self.tokenizer, chunk, cfg.max_new_tokens, **kwargs))
            else:
                out.extend(generate_batch(self.model, self.tokenizer, chunk, cfg.max_new_tokens, **kwargs))
            if on_batch is not None:
                on_batch(len(chunk))
        return out

    def answer(self, questions: Sequence[Question], use_cache: bool = True) -> list[Answer]:
        prepared = [self.prepare(q) for q in questions]
        generated = self.generate(prepared, use_cache=use_cache)
        return [
            Answer(
                question=q.question,
                answer=g.text,
                doc_id=q.doc_id,
                task=q.task,
                segments=p.segments,
                summary_vectors=p.positions - len(p.prompt_ids),
                prompt_tokens=len(p.prompt_ids),
                generated_tokens=len(g.token_ids),
                latency_s=round(g.latency_s, 6),
                adapter_key=self.adapter.key if self.adapter else None,
                prompt_set=self.prompts.name,
                token_ids=g.token_ids,
                segments_total=p.segments_total,
                prompt_ids=p.prompt_ids,
                problems=list(self.problems) if q.doc_id is None else [],
            )
            for q, p, g in zip(questions, prepared, generated)
        ]


def ask_question(config: AskConfig) -> Question:
    return Question(config.question, config.doc_id, config.task, config.options)


def ask_answerer(config: AskConfig) -> Answerer:
    """The Answerer for one `ask`: its named document is checked before the decoder loads."""
    return Answerer(config, top_k=config.top_k, doc_ids=[config.doc_id] if config.doc_id else ())


def answer(config: AskConfig) -> Answer:
    """Answer one question (the `lloco ask` library call)."""
    return ask_answerer(config).answer([ask_question(config)])[0]
