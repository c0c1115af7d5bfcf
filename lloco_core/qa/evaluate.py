"""Evaluate LLoCO against baselines on the same examples, and write the report to the store.

Systems (all on the same decoder weights, in one run):
- `no_context`: the prompt alone;
- `truncated`: the raw document, middle cut to fit the decoder window (as LongBench truncates);
- `retrieval`: the top BM25 segments' raw text (segments as stored), in document order, within the window;
- `lloco_base`: summary vectors + prompt, adapter switched off;
- `lloco`: summary vectors + prompt with the corpus adapter.

Eval sets: a benchmark JSONL (LongBench qasper/narrativeqa/hotpotqa/qmsum, QuALITY) whose
contexts become corpus documents with `doc_id = eval-<dataset>-<sha256(context)[:16]>` (content
hashed: questions sharing an article share a document, a re-run ingests nothing), compressed under
the corpus's encoder before answering; or a corpus QA JSONL (`qa.load_qa`: `doc_id` names a
document already in the corpus). Outputs go to `<root>/<corpus>/evals/<eval-key>/`, where the key
hashes the adapter key, the eval set's bytes and every setting that changes a number.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

import torch

from lloco_core.config import CompressConfig
from lloco_core.errors import InputError
from lloco_core.fingerprint import checkpoint_fingerprint, stable_hash
from lloco_core.model.compress import compress, resolve_model_folder
from lloco_core.qa.answer import Answerer, Prepared, Question, resolve_generation
from lloco_core.qa.config import EvaluateConfig
from lloco_core.qa.dataset import load_qa
from lloco_core.qa.evalsets import load_eval_set
from lloco_core.qa.metrics import METRICS, ROUGE_LIBRARY
from lloco_core.qa.report import write_report
from lloco_core.qa.retrieval import rank_segments
from lloco_core.store.documents import DocumentTable
from lloco_core.store.embeddings import EmbeddingStore, list_encoders
from lloco_core.store.sources import SourceDocument
from lloco_core.store.storage import Store, open_url, storage_options_for
from lloco_core.training.adapters import resolve_adapter

TASK_METRIC = {"qa": "qa_f1", "multiple_choice": "accuracy", "query_summary": "rouge_l"}
EXTRA_METRICS = {"hotpot_f1": ("hotpot_em",)}
EVAL_FORMAT = 1


@dataclass
class EvalItem:
    id: str
    doc_id: str
    question: str
    answers: list[str]
    task: str
    options: list[str] | None
    metric: str
    dataset: str


def _is_corpus_format(path: str, endpoint_url: str | None = None) -> bool:
    try:
        with open_url(path, "rt", endpoint_url, encoding="utf-8", compression="infer") as f:
            for line in f:
                if line.strip():
                    return '"doc_id"' in line
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not UTF-8 text ({err.reason})") from None
    return False


def eval_doc_id(dataset: str, context: str) -> str:
    return f"eval-{dataset}-{hashlib.sha256(context.encode('utf-8')).hexdigest()[:16]}"


def load_items(config: EvaluateConfig, store: Store) -> tuple[list[EvalItem], list[SourceDocument]]:
    """Eval items with doc_ids in the corpus, plus the documents that must be ingested for them."""
    fmt = config.format
    if fmt == "corpus" or (fmt == "auto" and _is_corpus_format(config.eval_set, config.endpoint_url)):
        data = load_qa(config.eval_set, storage_options_for(config.eval_set, config.endpoint_url))
        items = [EvalItem(i.id, i.doc_id, i.question, i.answers, i.task, i.options, TASK_METRIC[i.task], "corpus") for i in data.items]
        return items[: config.limit] if config.limit else items, []
    examples = load_eval_set(config.eval_set, fmt, config.dataset, config.limit, config.endpoint_url)
    if not examples:
        raise InputError(f"{config.eval_set}: no examples")
    docs: dict[str, SourceDocument] = {}
    items = []
    for ex in examples:
        doc_id = eval_doc_id(ex.dataset, ex.context)
        docs.setdefault(doc_id, SourceDocument(doc_id, ex.context, config.eval_set, {"eval_dataset": ex.dataset}))
        items.append(EvalItem(ex.id, doc_id, ex.question, ex.answers, ex.task, ex.options, ex.metric, ex.dataset))
    return items, list(docs.values())


def _encoder_compress_config(config: EvaluateConfig, store: Store, model: str, encoder_key: str | None) -> CompressConfig:
    """Compress new eval documents with the settings the corpus's embeddings were written with."""
    keys = [encoder_key] if encoder_key else list_encoders(store, config.corpus)
    extra: dict[str, Any] = {}
    if len(keys) == 1:
        meta = EmbeddingStore(store, config.corpus, keys[0]).schema_metadata(required=False)
        if meta:
            extra = {"segment_length": int(meta[b"segment_length"]), "stored_dtype": meta[b"dtype"].decode()}
    return CompressConfig(root=config.root, endpoint_url=config.endpoint_url, corpus=config.corpus, model=model, device=config.device, **extra)


def ensure_documents(config: EvaluateConfig, store: Store, documents: list[SourceDocument]) -> str | None:
    """Ingest eval contexts that are new to the corpus and compress them; returns the encoder key used."""
    if not documents:
        return None
    table = DocumentTable(store, config.corpus)
    current = table.current()
    new = [d for d in documents if d.doc_id not in current or current[d.doc_id].sha256 != d.sha256]
    if new:
        table.append(new)
    model = config.model
    if model is None:
        adapter = None if config.no_adapter else resolve_adapter(store, config.corpus, config.adapter_key)
        model = adapter.base_model if adapter else None
    if model is None:
        raise InputError("evaluating a benchmark file compresses its contexts: pass --model (or finetune an adapter first)")
    summary = compress(_encoder_compress_config(config, store, model, config.encoder_key))
    if config.encoder_key and summary.encoder_key != config.encoder_key:
        raise InputError(f"the eval contexts compress under {summary.encoder_key}, not the requested encoder {config.encoder_key}")
    return summary.encoder_key


def truncate_middle(ids: list[int], keep: int) -> list[int]:
    """Keep the first and last halves of a too-long token list (LongBench's truncation)."""
    if keep <= 0:
        return []
    if len(ids) <= keep:
        return ids
    head = keep // 2
    return ids[:head] + ids[len(ids) - (keep - head) :]


class Baselines:
    """Raw-text decoder inputs for the baseline systems, on the answerer's tokenizer and window."""

    def __init__(self, answerer: Answerer, texts: dict[str, str], top_k: int | None) -> None:
        self.a = answerer
        self.texts = texts
        self.top_k = top_k
        self.sep = answerer.tokenizer("\n\n", add_special_tokens=False)["input_ids"]

    def _prompt_tail(self, q: Question) -> list[int]:
        return self.a.render(q)[1:]  # without BOS: it goes before the context

    def _free(self, q: Question) -> int:
        return self.a.window - self.a.config.max_new_tokens - 1 - len(self.sep) - len(self._prompt_tail(q))

    def _embed(self, context_ids: list[int], q: Question) -> Prepared:
        ids = [self.a.tokenizer.bos_token_id, *context_ids, *self.sep, *self._prompt_tail(q)] if context_ids else self.a.render(q)
        return Prepared(self.a.model.get_input_embeddings()(torch.tensor(ids, device=self.a.model.device)).detach(), [])

    def full_tokens(self, q: Question) -> int:
        """Prompt tokens of the whole raw document + prompt, untruncated: the compression baseline."""
        context = self.a.tokenizer(self.texts[q.doc_id], add_special_tokens=False)["input_ids"]
        return 1 + len(context) + len(self.sep) + len(self._prompt_tail(q))

    def no_context(self, q: Question) -> Prepared:
        return self._embed([], q)

    def truncated(self, q: Question) -> Prepared:
        context = self.a.tokenizer(self.texts[q.doc_id], add_special_tokens=False)["input_ids"]
        return self._embed(truncate_middle(context, self._free(q)), q)

    def retrieval(self, q: Question) -> Prepared:
        doc = self.a.embeddings.read_document(q.doc_id, index=self.a.index)
        free, chosen, used = self._free(q), [], 0
        for i in rank_segments(q.question, doc.text, self.a.retriever):
            n = doc.token_end[i] - doc.token_start[i]
            if used + n > free or (self.top_k and len(chosen) >= self.top_k):
                continue
            chosen.append(i)
            used += n
        text = "".join(doc.text[i] for i in sorted(chosen))
        ids = self.a.tokenizer(text, add_special_tokens=False)["input_ids"][:free] if chosen else []
        return self._embed(ids, q)


def eval_key(config: EvaluateConfig, adapter_key: str | None, encoder_key: str, eval_sha: str, model_weights: str) -> str:
    settings = config.model_dump(exclude={"root", "endpoint_url", "force", "batch_size", "device", "eval_set", "model", "adapter_key", "encoder_key"})
    return "eval-" + stable_hash({"format_version": EVAL_FORMAT, "adapter": adapter_key, "encoder": encoder_key, "eval_set": eval_sha, "weights": model_weights, **settings})


def _file_sha256(path: str, endpoint_url: str | None = None) -> str:
    with open_url(path, "rb", endpoint_url, compression="infer") as f:
        return hashlib.sha256(f.read()).hexdigest()


def score(item: EvalItem, prediction: str) -> dict[str, float]:
    scores = {item.metric: METRICS[item.metric](prediction, item.answers)}
    for extra in EXTRA_METRICS.get(item.metric, ()):
        scores[extra] = METRICS[extra](prediction, item.answers)
    return scores


def evaluate(config: EvaluateConfig) -> dict[str, Any]:
    """Run every system on the same examples; write metrics.json, predictions.jsonl, report.md, plot.png."""
    started = time.perf_counter()
    store = Store.from_config(config)
    items, documents = load_items(config, store)
    if not DocumentTable(store, config.corpus).current() and not documents:
        raise InputError(f"corpus {config.corpus!r} does not exist in {store.uri(store.root)} (it has no documents)")
    encoder_key = ensure_documents(config, store, documents) or config.encoder_key
    config = config.model_copy(update={"encoder_key": encoder_key})
    adapter, model_path, encoder_key = resolve_generation(config, store)
    weights = checkpoint_fingerprint(resolve_model_folder(model_path, None))
    key = eval_key(config, adapter.key if adapter else None, encoder_key, _file_sha256(config.eval_set, config.endpoint_url), weights)
    folder = store.path(config.corpus, "evals", key)
    if not config.force and store.exists(f"{folder}/metrics.json"):
        return {**store.read_json(f"{folder}/metrics.json"), "cached": True}
    answerer = Answerer(config)
    systems = [s for s in config.systems if s != "lloco" or answerer.adapter is not None]
    skipped = [s for s in config.systems if s not in systems]
    for item in items:
        answerer.check_document(item.doc_id)
    questions = [Question(i.question, i.doc_id, i.task, i.options) for i in items]
    baselines = Baselines(answerer, DocumentTable(store, config.corpus).read_texts([answerer.documents[i.doc_id] for i in items]), config.top_k)
    full_tokens = [baselines.full_tokens(q) for q in questions]
    rows: list[dict[str, Any]] = []
    for system in systems:
        prepared = [answerer.prepare(q) if system.startswith("lloco") else getattr(baselines, system)(q) for q in questions]
        generated = answerer.generate(prepared, adapter=system == "lloco")
        for item, p, g, full in zip(items, prepared, generated, full_tokens):
            rows.append(
                {
                    "system": system, "id": item.id, "dataset": item.dataset, "doc_id": item.doc_id, "question": item.question,
                    "prediction": g.text, "references": item.answers, "metric": item.metric, "scores": score(item, g.text),
                    "score": score(item, g.text)[item.metric], "prompt_tokens": int(p.embeds.shape[0]), "full_context_tokens": full,
                    "generated_tokens": len(g.token_ids), "latency_s": round(g.latency_s, 6),
                    "segments": [[k.doc_id, k.segment_index] for k in p.segments],
                }
            )
    summary = {
        "eval_key": key,
        "corpus": config.corpus,
        "eval_set": config.eval_set,
        "examples": len(items),
        "adapter_key": answerer.adapter.key if answerer.adapter else None,
        "encoder_key": answerer.encoder_key,
        "model": answerer.model_path,
        "systems": aggregate(rows, systems),
        "skipped_systems": {s: "no finished adapter for this corpus" for s in skipped},
        "rouge_library": ROUGE_LIBRARY,
        "settings": config.model_dump(mode="json", exclude={"root", "endpoint_url", "force"}),
        "batch_size": config.batch_size,
        "seconds": round(time.perf_counter() - started, 3),
        "out": store.uri(folder),
    }
    write_report(store, folder, summary, rows)
    return {**summary, "cached": False}


def aggregate(rows: list[dict[str, Any]], systems: list[str]) -> dict[str, dict[str, Any]]:
    """Per system: mean score (and each metric), mean prompt tokens, compression ratio, mean latency."""
    out = {}
    for system in systems:
        mine = [r for r in rows if r["system"] == system]
        n = len(mine) or 1
        metrics = sorted({m for r in mine for m in r["scores"]})
        prompt = sum(r["prompt_tokens"] for r in mine) / n
        full = sum(r["full_context_tokens"] for r in mine) / n
        out[system] = {
            "score": round(sum(r["score"] for r in mine) / n, 4),
            "metrics": {m: round(sum(r["scores"].get(m, 0.0) for r in mine) / n, 4) for m in metrics},
            "mean_prompt_tokens": round(prompt, 1),
            "mean_full_context_tokens": round(full, 1),
            "compression_ratio": round(full / prompt, 2) if prompt else None,
            "mean_latency_s": round(sum(r["latency_s"] for r in mine) / n, 5),
            "examples": len(mine),
        }
    return out
