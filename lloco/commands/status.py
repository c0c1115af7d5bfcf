"""lloco status [--corpus NAME] [--root URL]: what a store holds, read-only.

Per corpus: documents (current versions), compressed documents per encoder key and what is still
pending under each (new or changed documents), documents no encoder has compressed, finished
adapters with their keys and finish times, unfinished training runs, and evaluations with their
scores. Everything comes from commit records and small JSON files through the store APIs; no
Parquet data is read and nothing is written or created (a missing root is an error, not a new
folder).
"""

from __future__ import annotations

import argparse
import datetime
import os
from typing import Any

from lloco_core.config import NAME_PATTERN, CorpusConfig, StoreConfig

from ._options import add_store_options, config_values


def _iso(seconds: float) -> str | None:
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).isoformat(timespec="seconds") if seconds else None


def _subfolders(store: Any, folder: str) -> list[str]:
    """Names of the folders directly under `folder` that could be corpus or key names."""
    store.fs.invalidate_cache(folder)
    try:
        entries = store.fs.ls(folder, detail=True)
    except FileNotFoundError:
        return []
    names = (e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries if e.get("type") == "directory")
    return sorted(n for n in names if NAME_PATTERN.match(n) and ".." not in n)


CORPUS_PARTS = {"documents", "embeddings", "adapters", "evals"}


def corpus_names(store: Any) -> list[str]:
    """Corpora in the root: folders with documents, embeddings, adapters or evals inside."""
    return [name for name in _subfolders(store, store.root) if CORPUS_PARTS & set(_subfolders(store, store.path(name)))]


def encoder_status(store: Any, corpus: str, documents: dict[str, Any]) -> tuple[list[dict[str, Any]], set[str]]:
    """Per encoder key: current documents compressed, pending (new or changed since), shards;
    and the documents compressed under any key."""
    from lloco_core.store.embeddings import EmbeddingStore, list_encoders

    rows, covered = [], set()
    for key in list_encoders(store, corpus):
        embeddings = EmbeddingStore(store, corpus, key)
        current = embeddings.current_index(documents)
        covered |= set(current)
        rows.append({
            "encoder_key": key,
            "documents_compressed": len(current),
            "documents_pending": len(documents) - len(current),
            "shards": len(set(embeddings.committed().values())),
        })
    return rows, covered


def adapter_status(store: Any, corpus: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Finished adapters (newest first) and unfinished runs with their newest committed checkpoint."""
    from lloco_core.training.adapters import list_adapters
    from lloco_core.training.checkpoints import AdapterStore

    finished = [
        {"adapter_key": a.key, "encoder_key": a.encoder_key, "base_model": a.base_model, "finished": _iso(a.modified), "uri": a.uri}
        for a in list_adapters(store, corpus)
    ]
    done = {a["adapter_key"] for a in finished}
    running = []
    for key in _subfolders(store, store.path(corpus, "adapters")):
        if key in done:
            continue
        checkpoint = AdapterStore(store, corpus, key).checkpoints.newest()
        running.append({"adapter_key": key, "checkpoint_step": checkpoint["step"] if checkpoint else None})
    return finished, running


def eval_status(store: Any, corpus: str) -> list[dict[str, Any]]:
    """Finished evaluations (those with metrics.json): eval set, adapter and the score per system."""
    rows = []
    for key in _subfolders(store, store.path(corpus, "evals")):
        path = store.path(corpus, "evals", key, "metrics.json")
        if not store.exists(path):
            continue
        metrics = store.read_json(path)
        rows.append({
            "eval_key": key,
            "eval_set": metrics.get("eval_set"),
            "examples": metrics.get("examples"),
            "adapter_key": metrics.get("adapter_key"),
            "scores": {name: s.get("score") for name, s in (metrics.get("systems") or {}).items()},
        })
    return rows


def corpus_status(store: Any, corpus: str) -> dict[str, Any]:
    from lloco_core.store.documents import DocumentTable

    documents = DocumentTable(store, corpus).current()
    encoders, covered = encoder_status(store, corpus, documents)
    adapters, training = adapter_status(store, corpus)
    return {
        "corpus": corpus,
        "documents": len(documents),
        "documents_uncompressed": len(set(documents) - covered),
        "encoders": encoders,
        "adapters": adapters,
        "training": training,
        "evals": eval_status(store, corpus),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    config = CorpusConfig(**config_values(args, CorpusConfig)) if args.corpus is not None else StoreConfig(**config_values(args, StoreConfig))
    from lloco_core.errors import InputError
    from lloco_core.store.storage import Store

    local = None if "://" in config.root and not config.root.startswith("file://") else os.path.expanduser(config.root.removeprefix("file://"))
    if local is not None and not os.path.isdir(local):  # checked first: a local Store would create it
        raise InputError(f"no store at {config.root!r}: the folder does not exist (give --root or set $LLOCO_ROOT)")
    store = Store.from_config(config)
    if local is None and not store.exists(store.root):
        raise InputError(f"no store at {config.root!r}: nothing is stored under that URL")
    names = corpus_names(store)
    if args.corpus is not None:
        if args.corpus not in names:
            raise InputError(f"corpus {args.corpus!r} is not in the store {config.root!r} (corpora: {', '.join(names) or 'none'})")
        names = [args.corpus]
    return {"root": config.root, "corpora": [corpus_status(store, name) for name in names]}


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def describe(result: dict[str, Any]) -> str:
    parts = []
    for c in result["corpora"]:
        compressed = max((e["documents_compressed"] for e in c["encoders"]), default=0)
        parts.append(f"{c['corpus']} ({_count(c['documents'], 'document')}, {compressed} compressed, {c['documents_uncompressed']} not compressed, {_count(len(c['adapters']), 'adapter')}, {_count(len(c['evals']), 'evaluation')})")
    corpora = "1 corpus" if len(result["corpora"]) == 1 else f"{len(result['corpora'])} corpora"
    return f"{corpora} in {result['root']}" + (": " + "; ".join(parts) if parts else "")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("status", help="what a store holds: corpora, documents, compressed and pending work, adapters, evaluations (read-only)")
    add_store_options(parser, corpus_required=False)
    parser.set_defaults(handler=run)
