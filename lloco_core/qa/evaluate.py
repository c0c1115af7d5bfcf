"""Evaluate LLoCO against baselines on the same examples, and write the report to the store.

Systems (all on the same decoder weights, in one run):
- `no_context`: the prompt alone;
- `truncated`: the raw document, middle cut to fit the decoder window (as LongBench truncates);
- `retrieval`: the top BM25 segments' raw text (segments as stored), in document order, within the window;
- `lloco_base`: summary vectors + prompt, adapter switched off;
- `lloco`: summary vectors + prompt with the corpus adapter.

Eval sets:
- a benchmark JSONL (LongBench qasper/narrativeqa/hotpotqa/qmsum, QuALITY's own JSONL): its
  contexts go into their own corpus, `eval-<file name>` (`eval_corpus`), never into the corpus
  being evaluated, as documents `eval-<dataset>-<sha256(context)[:16]>` (content hashed: questions
  sharing an article share a document, a re-run ingests nothing), compressed with the evaluated
  corpus's encoder settings; the evaluated corpus's documents, shards and exports stay
  byte-identical. Records with an empty or invalid context are skipped and listed (`skipped`).
- a corpus QA JSONL (`qa.load_qa`: `doc_id` names a document already in the corpus);
- nothing: the adapter's held-out questions (`heldout.jsonl`, written by finetune), documents the
  adapter never trained on.
Questions are rendered with the paper's template of their dataset (or their QA line's task).
Outputs go to `<root>/<corpus>/evals/<eval-key>/`, where the key hashes the adapter key, the eval
set's bytes and every setting that changes a number (decoder dtype included).
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from lloco_core.config import CompressConfig
from lloco_core.errors import InputError
from lloco_core.fingerprint import checkpoint_fingerprint, stable_hash
from lloco_core.model.compress import compress, resolve_model_folder
from lloco_core.qa.answer import Answerer, Prepared, Question, resolve_generation
from lloco_core.qa.config import EvaluateConfig
from lloco_core.qa.dataset import HELDOUT_FILE, load_qa
from lloco_core.qa.evalsets import read_eval_set
from lloco_core.qa.metrics import METRICS, ROUGE_LIBRARY
from lloco_core.qa.report import write_report
from lloco_core.qa.retrieval import rank_segments
from lloco_core.store.documents import DocumentTable
from lloco_core.store.embeddings import EmbeddingStore, list_encoders
from lloco_core.store.sources import Skipped, SourceDocument
from lloco_core.store.storage import Store, open_url, storage_options_for
from lloco_core.training.adapters import AdapterInfo, resolve_adapter

TASK_METRIC = {
    "qa": "qa_f1", "qasper": "qa_f1", "narrativeqa": "qa_f1", "hotpotqa": "hotpot_f1",
    "quality": "accuracy", "multiple_choice": "accuracy", "qmsum": "rouge_l", "query_summary": "rouge_l",
}
"""Metric of a corpus QA line by its task (benchmark examples carry their own)."""
EXTRA_METRICS = {"hotpot_f1": ("hotpot_em",)}
EVAL_FORMAT = 2


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


def _is_corpus_format(path: str, store: Store) -> bool:
    try:
        with open_url(path, "rt", store.endpoint_url, encoding="utf-8", compression="infer") as f:
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


def eval_corpus_name(eval_set: str) -> str:
    """`eval-<file name without extensions>`, made a valid corpus name: where a benchmark's contexts live."""
    stem = eval_set.rstrip("/").rsplit("/", 1)[-1]
    for suffix in (".gz", ".bz2", ".xz", ".zst", ".jsonl", ".json"):
        stem = stem.removesuffix(suffix)
    stem = re.sub(r"\.{2,}", ".", re.sub(r"[^A-Za-z0-9._-]+", "-", stem)).strip(".-_") or "set"
    return f"eval-{stem}"[:128]


@dataclass
class EvalInputs:
    """What an evaluation reads: its items, the corpus holding their documents, the documents a
    benchmark brings (to ingest into that corpus), and the records skipped for a bad context."""

    eval_set: str
    items: list[EvalItem]
    context_corpus: str
    documents: list[SourceDocument]
    skipped: list[Skipped]


def heldout_eval_set(config: EvaluateConfig, store: Store) -> str:
    """The adapter's held-out questions (finetune's `heldout.jsonl`): the default eval set."""
    if config.no_adapter:
        raise InputError("no eval set given: pass EVAL_FILE (without an adapter there are no held-out questions to evaluate)")
    adapter: AdapterInfo | None = resolve_adapter(store, config.corpus, config.adapter_key, required=True)
    assert adapter is not None
    path = store.path(config.corpus, "adapters", adapter.key, HELDOUT_FILE)
    if not store.exists(path):
        raise InputError(f"adapter {adapter.key!r} of corpus {config.corpus!r} held out no questions (one document, or holdout 0): pass EVAL_FILE")
    return store.uri(path)


def load_items(config: EvaluateConfig, store: Store) -> EvalInputs:
    """Eval items, where their documents live, and the documents a benchmark file brings."""
    eval_set = config.eval_set or heldout_eval_set(config, store)
    fmt = config.format
    if fmt == "corpus" or config.eval_set is None or (fmt == "auto" and _is_corpus_format(eval_set, store)):
        data = load_qa(eval_set, storage_options_for(eval_set, store.endpoint_url))
        items = [EvalItem(i.id, i.doc_id, i.question, i.answers, i.task, i.options, TASK_METRIC[i.task], "corpus") for i in data.items]
        return EvalInputs(eval_set, items[: config.limit] if config.limit else items, config.corpus, [], [])
    bench = read_eval_set(eval_set, fmt, config.dataset, config.limit, store.endpoint_url)
    if not bench.examples:
        reasons = f" ({len(bench.skipped)} records skipped, e.g. {bench.skipped[0].item}: {bench.skipped[0].reason})" if bench.skipped else ""
        raise InputError(f"{eval_set}: no examples{reasons}")
    docs: dict[str, SourceDocument] = {}
    items = []
    for ex in bench.examples:
        doc_id = eval_doc_id(ex.dataset, ex.context)
        docs.setdefault(doc_id, SourceDocument(doc_id, ex.context, eval_set, {"eval_dataset": ex.dataset}))
        items.append(EvalItem(ex.id, doc_id, ex.question, ex.answers, ex.task, ex.options, ex.metric, ex.dataset))
    context_corpus = config.eval_corpus or eval_corpus_name(eval_set)
    if context_corpus == config.corpus:
        raise InputError(f"benchmark contexts of {eval_set} would go into the evaluated corpus {config.corpus!r}: pass --eval-corpus with another name")
    return EvalInputs(eval_set, items, context_corpus, list(docs.values()), bench.skipped)


def _encoder_compress_config(config: EvaluateConfig, store: Store, model: str, encoder_key: str | None, context_corpus: str) -> CompressConfig:
    """Compress new eval documents (into their own corpus) with the settings the evaluated
    corpus's embeddings were written with, so they land under the same encoder key."""
    keys = [encoder_key] if encoder_key else list_encoders(store, config.corpus)
    extra: dict[str, Any] = {}
    if len(keys) == 1:
        meta = EmbeddingStore(store, config.corpus, keys[0]).schema_metadata(required=False)
        if meta:
            extra = {"segment_length": int(meta[b"segment_length"]), "stored_dtype": meta[b"dtype"].decode()}
    return CompressConfig(root=config.root, endpoint_url=config.endpoint_url, corpus=context_corpus, model=model, device=config.device, **extra)


ProgressFn = Callable[[dict[str, Any]], None]
CompressCallbacks = Mapping[str, Callable[..., None]]
"""`compress`'s progress callbacks by keyword (on_plan, on_batch, on_shard), for the eval contexts."""


def ensure_documents(
    config: EvaluateConfig, store: Store, documents: list[SourceDocument], context_corpus: str, compress_callbacks: CompressCallbacks | None = None
) -> str | None:
    """Ingest eval contexts that are new to their own corpus and compress them; returns the encoder key used."""
    if not documents:
        return None
    table = DocumentTable(store, context_corpus)
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
    summary = compress(_encoder_compress_config(config, store, model, config.encoder_key, context_corpus), **(compress_callbacks or {}))
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
        self.bos = [answerer.tokenizer.bos_token_id] if answerer.prompts.bos else []

    def _prompt_tail(self, q: Question) -> list[int]:
        return self.a.render(q)[len(self.bos) :]  # without BOS: it goes before the context

    def _free(self, q: Question) -> int:
        return self.a.window - self.a.config.max_new_tokens - len(self.bos) - len(self.sep) - len(self._prompt_tail(q))

    def _embed(self, context_ids: list[int], q: Question) -> Prepared:
        ids = [*self.bos, *context_ids, *self.sep, *self._prompt_tail(q)] if context_ids else self.a.render(q)
        return Prepared(self.a.model.get_input_embeddings()(torch.tensor(ids, device=self.a.model.device)).detach(), [], ids)

    def full_tokens(self, q: Question) -> int:
        """Prompt tokens of the whole raw document + prompt, untruncated: the compression baseline."""
        context = self.a.tokenizer(self.texts[q.doc_id], add_special_tokens=False)["input_ids"]
        return len(self.bos) + len(context) + len(self.sep) + len(self._prompt_tail(q))

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
    settings = config.model_dump(exclude={"root", "endpoint_url", "force", "batch_size", "device", "eval_set", "eval_corpus", "model", "adapter_key", "encoder_key"})
    return "eval-" + stable_hash({"format_version": EVAL_FORMAT, "adapter": adapter_key, "encoder": encoder_key, "eval_set": eval_sha, "weights": model_weights, **settings})


def _file_sha256(path: str, store: Store) -> str:
    with open_url(path, "rb", store.endpoint_url, compression="infer") as f:
        return hashlib.sha256(f.read()).hexdigest()


def score(item: EvalItem, prediction: str) -> dict[str, float]:
    scores = {item.metric: METRICS[item.metric](prediction, item.answers)}
    for extra in EXTRA_METRICS.get(item.metric, ()):
        scores[extra] = METRICS[extra](prediction, item.answers)
    return scores


def evaluate(config: EvaluateConfig, on_progress: ProgressFn | None = None, compress_callbacks: CompressCallbacks | None = None) -> dict[str, Any]:
    """Run every system on the same examples; write metrics.json, predictions.jsonl, report.md, plot.png.

    Progress: `compress_callbacks` while a benchmark's new contexts are compressed, then
    `on_progress({"event": "answers", "system", "done", "total"})` after each generation batch
    (total = systems x examples), so a long evaluation is never silent."""
    started = time.perf_counter()
    store = Store.from_config(config)
    inputs = load_items(config, store)
    items = inputs.items
    if not DocumentTable(store, inputs.context_corpus).current() and not inputs.documents:
        raise InputError(f"corpus {inputs.context_corpus!r} does not exist in {store.uri(store.root)} (it has no documents)")
    encoder_key = ensure_documents(config, store, inputs.documents, inputs.context_corpus, compress_callbacks) or config.encoder_key
    config = config.model_copy(update={"encoder_key": encoder_key})
    adapter, model_path, encoder_key = resolve_generation(config, store, inputs.context_corpus)
    weights = checkpoint_fingerprint(resolve_model_folder(model_path, None))
    key = eval_key(config, adapter.key if adapter else None, encoder_key, _file_sha256(inputs.eval_set, store), weights)
    folder = store.path(config.corpus, "evals", key)
    if not config.force and store.exists(f"{folder}/metrics.json"):
        return {**store.read_json(f"{folder}/metrics.json"), "cached": True}
    answerer = Answerer(config, context_corpus=inputs.context_corpus, doc_ids=[item.doc_id for item in items])
    systems = [s for s in config.systems if s != "lloco" or answerer.adapter is not None]
    skipped = [s for s in config.systems if s not in systems]
    questions = [Question(i.question, i.doc_id, i.task, i.options) for i in items]
    texts = DocumentTable(store, inputs.context_corpus).read_texts([answerer.documents[i.doc_id] for i in items])
    baselines = Baselines(answerer, texts, config.top_k)
    full_tokens = [baselines.full_tokens(q) for q in questions]
    rows: list[dict[str, Any]] = []
    done, total = 0, len(systems) * len(questions)
    for system in systems:

        def answered(n: int, system: str = system) -> None:
            nonlocal done
            done += n
            if on_progress is not None:
                on_progress({"event": "answers", "system": system, "done": done, "total": total})

        prepared = [answerer.prepare(q) if system.startswith("lloco") else getattr(baselines, system)(q) for q in questions]
        generated = answerer.generate(prepared, adapter=system == "lloco", on_batch=answered)
        for item, p, g, full in zip(items, prepared, generated, full_tokens):
            rows.append(
                {
                    "system": system, "id": item.id, "dataset": item.dataset, "doc_id": item.doc_id, "question": item.question,
                    "task": item.task, "prediction": g.text, "references": item.answers, "metric": item.metric, "scores": score(item, g.text),
                    "score": score(item, g.text)[item.metric], "prompt_tokens": p.positions, "full_context_tokens": full,
                    "generated_tokens": len(g.token_ids), "latency_s": round(g.latency_s, 6),
                    "segments": [[k.doc_id, k.segment_index] for k in p.segments],
                }
            )
    summary = {
        "eval_key": key,
        "corpus": config.corpus,
        "eval_set": inputs.eval_set,
        "eval_corpus": inputs.context_corpus,
        "examples": len(items),
        "documents": len({i.doc_id for i in items}),
        "skipped": [s.as_dict() for s in inputs.skipped],
        "prompt_set": answerer.prompts.name,
        "adapter_key": answerer.adapter.key if answerer.adapter else None,
        "encoder_key": answerer.encoder_key,
        "model": answerer.model_path,
        "systems": aggregate(rows, systems),
        "skipped_systems": {s: "no finished adapter for this corpus" for s in skipped},
        "rouge_library": ROUGE_LIBRARY,
        "settings": config.model_dump(mode="json", exclude={"root", "endpoint_url", "force"}) | {"eval_set": inputs.eval_set},
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
