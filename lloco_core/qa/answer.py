"""Answer questions from a compressed corpus: retrieve segments, feed their summary vectors and the
prompt to the decoder (with the corpus's LoRA adapter), generate with a KV cache.

The decoder input is `[ selected summary vectors in document order ; embed(prompt, BOS first) ]`
(`decoder.build_decoder_inputs`), so inference lays out inputs exactly as finetuning did, and the
prompt is rendered with the template saved beside the adapter. Requests are generated in batches
(left padding, positions counted over real tokens), greedy by default; each answer reports the
segments it read, the prompt tokens (positions) the decoder saw, and the latency of its batch.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from lloco_core.errors import InputError
from lloco_core.model.autocompressor import load_tokenizer
from lloco_core.model.decoder import build_decoder_inputs, context_budget_segments, decoder_window, load_decoder, pad_batch
from lloco_core.qa.config import AskConfig, GenerationConfig
from lloco_core.qa.prompts import PromptSet, default_prompts
from lloco_core.qa.retrieval import SegmentKey, make_retriever, select_corpus_segments, select_segments
from lloco_core.store.documents import DocumentTable
from lloco_core.store.embeddings import EmbeddingStore, pick_encoder
from lloco_core.store.storage import Store
from lloco_core.training.adapters import AdapterInfo, resolve_adapter


@dataclass(frozen=True)
class Question:
    """One request: a question about one document (doc_id) or the whole corpus (doc_id None)."""

    question: str
    doc_id: str | None = None
    task: str = "qa"
    options: list[str] | None = None


@dataclass
class Answer:
    question: str
    answer: str
    doc_id: str | None
    segments: list[dict[str, Any]]  # [{"doc_id", "segment_index"}] in the order the decoder read them
    prompt_tokens: int  # decoder positions: summary vectors + prompt tokens
    generated_tokens: int
    latency_s: float  # wall time of the batch this answer was generated in (prefill + decode)
    adapter_key: str | None = None
    token_ids: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Prepared:
    """One decoder input ready to generate from."""

    embeds: torch.Tensor  # [L, H]
    segments: list[SegmentKey]


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


def prompt_ids(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """BOS then the prompt's tokens: added by hand, never left to `add_special_tokens`."""
    return [tokenizer.bos_token_id, *tokenizer(text, add_special_tokens=False)["input_ids"]]


def resolve_generation(config: GenerationConfig, store: Store) -> tuple[AdapterInfo | None, str, str]:
    """Adapter (named, newest finished, or none), base model path and encoder key, without loading a model."""
    adapter = None if config.no_adapter else resolve_adapter(store, config.corpus, config.adapter_key, required=config.adapter_key is not None)
    model = config.model or (adapter.base_model if adapter else None)
    if not model:
        raise InputError(f"corpus {config.corpus!r}: no adapter to take the base model from; pass --model")
    encoder_key = pick_encoder(store, config.corpus, config.encoder_key or (adapter.encoder_key if adapter else None))
    return adapter, model, encoder_key


class Answerer:
    """A loaded decoder (+ adapter) over one corpus's embeddings; answers many questions."""

    def __init__(self, config: GenerationConfig) -> None:
        self.config = config
        self.store = Store.from_config(config)
        self.corpus = config.corpus
        self.documents = DocumentTable(self.store, config.corpus).current()
        if not self.documents:
            raise InputError(f"corpus {config.corpus!r} does not exist in {self.store.uri(self.store.root)} (it has no documents)")
        self.adapter, model, self.encoder_key = resolve_generation(config, self.store)
        self.model_path = model
        self.embeddings = EmbeddingStore(self.store, config.corpus, self.encoder_key)
        self.index = self.embeddings.current_index(self.documents)
        adapter_files = self.adapter.files if self.adapter else None
        self.model = load_decoder(model, self.adapter.uri if self.adapter else None, config.device, config.endpoint_url, adapter_files)
        self.tokenizer = load_tokenizer(model)
        self.prompts: PromptSet = self.adapter.prompts if self.adapter else default_prompts()
        self.summary_length = int(self.model.config.summary_length)
        self.window = decoder_window(self.model, config.window)
        self.retriever = make_retriever(config.retriever, config.dense_model)

    # context -----------------------------------------------------------------------------------
    def render(self, q: Question) -> list[int]:
        try:
            template = self.prompts.for_task(q.task)
        except KeyError as err:
            raise InputError(str(err)) from None
        return prompt_ids(self.tokenizer, template.render(q.question, q.options))

    def budget(self, n_prompt: int) -> int:
        budget = context_budget_segments(self.window, self.summary_length, n_prompt, self.config.max_new_tokens)
        return min(budget, self.config.max_segments) if self.config.max_segments else budget

    def check_document(self, doc_id: str) -> None:
        if doc_id not in self.documents:
            raise InputError(f"document {doc_id!r} is not in corpus {self.corpus!r}")
        if doc_id not in self.index:
            raise InputError(f"document {doc_id!r} of corpus {self.corpus!r} has no committed embeddings under {self.encoder_key}: run `lloco compress`")

    def context(self, q: Question, budget: int) -> tuple[list[SegmentKey], torch.Tensor | None]:
        """The segments to read (document order) and their summaries [n, S, H]."""
        if budget <= 0:
            return [], None
        if q.doc_id is not None:
            self.check_document(q.doc_id)
            doc = self.embeddings.read_document(q.doc_id, index=self.index)
            chosen = select_segments(q.question, doc.text, budget, self.retriever)
            return [SegmentKey(q.doc_id, doc.segment_index[i]) for i in chosen], doc.summaries[chosen]
        docs = {doc_id: self.embeddings.read_document(doc_id, index=self.index) for doc_id in sorted(self.index)}
        candidates = [(SegmentKey(d, s), t) for d, doc in docs.items() for s, t in zip(doc.segment_index, doc.text)]
        keys = select_corpus_segments(q.question, candidates, budget, self.retriever)
        if not keys:
            return [], None
        rows = [docs[k.doc_id].summaries[docs[k.doc_id].segment_index.index(k.segment_index)] for k in keys]
        return keys, torch.stack(rows)

    def prepare(self, q: Question) -> Prepared:
        ids = self.render(q)
        segments, summaries = self.context(q, self.budget(len(ids)))
        return Prepared(build_decoder_inputs(self.model, summaries, ids), segments)

    # generation --------------------------------------------------------------------------------
    def generate(self, prepared: Sequence[Prepared], use_cache: bool = True, adapter: bool = True) -> list[Generated]:
        """Batches of `batch_size`; `adapter=False` runs the base weights of a PEFT model."""
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
        return out

    def answer(self, questions: Sequence[Question], use_cache: bool = True) -> list[Answer]:
        prepared = [self.prepare(q) for q in questions]
        generated = self.generate(prepared, use_cache=use_cache)
        return [
            Answer(
                question=q.question,
                answer=g.text,
                doc_id=q.doc_id,
                segments=[{"doc_id": k.doc_id, "segment_index": k.segment_index} for k in p.segments],
                prompt_tokens=int(p.embeds.shape[0]),
                generated_tokens=len(g.token_ids),
                latency_s=round(g.latency_s, 6),
                adapter_key=self.adapter.key if self.adapter else None,
                token_ids=g.token_ids,
            )
            for q, p, g in zip(questions, prepared, generated)
        ]


def answer(config: AskConfig) -> Answer:
    """Answer one question (the `lloco ask` library call)."""
    answerer = Answerer(config)
    return answerer.answer([Question(config.question, config.doc_id, config.task, config.options)])[0]
