"""Compress planning time against the number of committed documents (issue 11, row (f)).

Builds a store with `--docs` committed documents (document commits of `--part-docs` each, shard
commits of `--shard-size` each, as compress writes them: records with checksums, one small data file
per record so listings and size checks are real), compacting as it goes as the writers do, adds
one document commit of `--new` documents (the nightly increment), then times `plan_compress`
(median of `--repeats`). Prints one JSON line:

    plan_seconds         planning with snapshots (this code): reads what is new
    plan_reads           commit records + snapshot files it fetched
    full_plan_seconds    this code reading every record and snapshot run (--full)
    before_plan_seconds  the code of `--before REF` (default main) on the same store, run from a
                         `git archive` of that ref in a subprocess (it reads generation-0 records
                         only: every record is copied there for it, so both see the same state)

    python bench/planning.py --docs 1000000 --new 1000 [--s3] [--before main|none] [--full]

Data files are placeholders of 64 bytes: planning never reads them, only lists their sizes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lloco_core.model.compress import EncoderSettings, plan_compress
from lloco_core.store.backlog import backlog, compact_embeddings, compact_embeddings_if_needed  # noqa: E402
from lloco_core.store.documents import DocumentTable, part_name
from lloco_core.store.embeddings import EmbeddingStore, shard_name
from lloco_core.store.storage import Store

SETTINGS = {"model_folder": "bench", "weights": "bench-weights", "summary_length": 50, "hidden_size": 4096, "accumulate_summary": True, "segment_length": 1536, "compute_dtype": "bfloat16", "stored_dtype": "bfloat16"}
PLACEHOLDER = b"lloco planning bench placeholder".ljust(64, b".")
PLACEHOLDER_SUM = {"size": len(PLACEHOLDER), "sha256": hashlib.sha256(PLACEHOLDER).hexdigest()}
BEFORE_SNIPPET = """
import json, statistics, sys, time
from lloco_core.model.compress import EncoderSettings, plan_compress
from lloco_core.store.storage import Store
root, endpoint, repeats, settings = sys.argv[1], sys.argv[2] or None, int(sys.argv[3]), json.loads(sys.argv[4])
times = []
for _ in range(repeats):
    started = time.perf_counter()
    plan = plan_compress(Store(root, endpoint), "c", EncoderSettings(**settings), 256)
    times.append(time.perf_counter() - started)
print(json.dumps({"seconds": statistics.median(times), "todo": sum(len(s.documents) for s in plan.shards)}))
"""


def documents(start: int, count: int, prefix: str = "doc") -> dict[str, str]:
    return {f"{prefix}-{i:09d}": hashlib.sha256(f"text {prefix} {i}".encode()).hexdigest() for i in range(start, start + count)}


def record(name: str, field: str, data_file: str, docs: dict[str, str], ns: int, **extra: Any) -> bytes:
    body = {"name": name, "committed_ns": ns, "format": 2, field: data_file, "documents": docs, "files": {data_file: PLACEHOLDER_SUM}, **extra}
    return json.dumps(body, sort_keys=True).encode()


def build(store: Store, encoder_key: str, n_docs: int, part_docs: int, shard_size: int, compact_every: int | None) -> float:
    """Committed documents and shards as nightly runs leave them: each document commit (ingest) is
    followed by the shard commits that compress it. Records are written in batches (s3fs sends a
    batch concurrently) and, unless `compact_every` is None, compacted as the writers do (after
    every document commit, every `compact_every` shard commits, and at the end of each "run").
    Returns the seconds spent compacting."""
    doc_prefix = store.path("c", "documents")
    emb_prefix = store.path("c", "embeddings", encoder_key)
    documents_log, embeddings = DocumentTable(store, "c"), EmbeddingStore(store, "c", encoder_key)
    ns = time.time_ns() - 10**12
    batch: dict[str, bytes] = {}
    compacting = 0.0

    def flush() -> None:
        if store.is_local:
            for path, data in batch.items():
                os.makedirs(os.path.dirname(path), exist_ok=True)
                Path(path).write_bytes(data)
        else:
            store.fs.pipe(dict(batch))
        batch.clear()

    def compact(action: Any) -> None:
        nonlocal compacting
        if compact_every is not None:
            flush()
            started = time.perf_counter()
            action()
            compacting += time.perf_counter() - started

    shards = 0
    for start in range(0, n_docs, part_docs):
        docs = documents(start, min(part_docs, n_docs - start))
        part = part_name(docs)
        ns += 1
        batch[f"{doc_prefix}/{part}"] = PLACEHOLDER
        folder = documents_log.log.generation_folder(documents_log.log.open_generation())
        batch[f"{folder}/{part.removesuffix('.parquet')}.json"] = record(part.removesuffix(".parquet"), "part", part, docs, ns, added=len(docs))
        flush()
        compact(documents_log.compact_if_needed)
        folder = embeddings.log.generation_folder(embeddings.log.open_generation())
        for first in range(start, start + len(docs), shard_size):
            held = documents(first, min(shard_size, start + len(docs) - first))
            name = shard_name(encoder_key, held)
            ns += 1
            shards += 1
            batch[f"{emb_prefix}/shards/{name}.parquet"] = PLACEHOLDER
            batch[f"{folder}/{name}.json"] = record(name, "shard", f"shards/{name}.parquet", held, ns, segments=len(held))
            if len(batch) >= 2000:
                flush()
            if compact_every is not None and shards % compact_every == 0:
                compact(lambda: compact_embeddings(embeddings, documents_log))
                folder = embeddings.log.generation_folder(embeddings.log.open_generation())
        flush()
        compact(lambda: compact_embeddings_if_needed(embeddings, documents_log))
    return compacting


def add_increment(store: Store, n_new: int) -> None:
    """One document commit of `n_new` new documents, through the library (and in generation 0 for the old code)."""
    docs = documents(0, n_new, "new")
    table = DocumentTable(store, "c")
    part = part_name(docs)
    store.write_bytes(table.log.data_path(part), PLACEHOLDER)
    committed = table.log.commit(part.removesuffix(".parquet"), {"part": part, "documents": docs, "files": {part: PLACEHOLDER_SUM}, "added": n_new})
    legacy = table.log.record_path(committed.name, 0)
    if not store.exists(legacy):
        store.write_bytes(legacy, json.dumps(committed.model_dump(mode="json")).encode())


def mirror_to_generation_zero(store: Store, encoder_key: str) -> None:
    """Copy the records of later generations into generation 0, where the code before generations
    reads them (this code reads generation 0 only until its first snapshot, so it is unaffected)."""
    for log in (DocumentTable(store, "c").log, EmbeddingStore(store, "c", encoder_key).log):
        for folder in store.list_dirs(log.generation_folder(0)):
            for path in store.list(folder, ".json"):
                target = f"{log.generation_folder(0)}/{path.rsplit('/', 1)[-1]}"
                store.fs.copy(path, target)


def timed(fn: Any, repeats: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def before(ref: str, root: str, endpoint: str | None, repeats: int, env: dict[str, str]) -> dict[str, Any]:
    """Time `plan_compress` of another git ref on the same store, in a subprocess."""
    repo = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory(prefix="lloco-before-") as code:
        archive = subprocess.run(["git", "-C", str(repo), "archive", ref, "lloco_core"], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", code], input=archive, check=True)
        out = subprocess.run(  # cwd = the archive: `python -c` puts the working directory first on sys.path
            [sys.executable, "-c", BEFORE_SNIPPET, root, endpoint or "", str(repeats), json.dumps(SETTINGS)],
            env={**env, "PYTHONPATH": code}, cwd=code, capture_output=True, text=True, check=True,
        )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=100_000, help="committed documents")
    parser.add_argument("--new", type=int, default=1_000, help="documents in the new increment")
    parser.add_argument("--s3", action="store_true", help="on a SeaweedFS server started for the run (tests/s3server.py)")
    parser.add_argument("--part-docs", type=int, default=250_000, help="documents per document commit")
    parser.add_argument("--shard-size", type=int, default=256, help="documents per shard commit")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--before", default="main", help="git ref whose plan_compress to time on the same store ('none' to skip)")
    parser.add_argument("--full", action="store_true", help="also time this code's full read (every record and snapshot run)")
    parser.add_argument("--root", help="local folder to build in (default: a temporary one)")
    parser.add_argument("--no-compact", dest="compact", action="store_false", help="leave the records uncompacted (a store written before snapshots)")
    parser.add_argument("--compact-every", type=int, default=1024, help="shard commits between compactions while building (writers: 64; more builds faster, same planning)")
    args = parser.parse_args()

    encoder_key = EncoderSettings(**SETTINGS).key
    server = None
    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="lloco-planning-") as tmp:
        if args.s3:
            from tests.s3server import SeaweedS3

            server = SeaweedS3(Path(tmp) / "weed").start()
            server.make_bucket("bench")
            os.environ.update({k: v for k, v in server.env().items() if k != "AWS_ENDPOINT_URL"})
            env.update(server.env())
            root, endpoint = "s3://bench/root", server.endpoint_url
        else:
            root, endpoint = args.root or str(Path(tmp) / "root"), None
        try:
            store = Store(root, endpoint)
            out: dict[str, Any] = {"docs": args.docs, "new": args.new, "s3": args.s3, "shard_size": args.shard_size, "part_docs": args.part_docs}
            started = time.perf_counter()
            out["compact_seconds"] = round(build(store, encoder_key, args.docs, args.part_docs, args.shard_size, args.compact_every if args.compact else None), 1)
            out["build_seconds"] = round(time.perf_counter() - started, 1)
            add_increment(store, args.new)

            settings = EncoderSettings(**SETTINGS)
            seconds, plan = timed(lambda: plan_compress(store, "c", settings, args.shard_size), args.repeats)
            reads = backlog(EmbeddingStore(store, "c", encoder_key), DocumentTable(store, "c")).reads
            out.update(plan_seconds=round(seconds, 4), plan_path=plan.planning, plan_reads=reads, todo=sum(len(s.documents) for s in plan.shards))
            if args.full:
                seconds, full = timed(lambda: plan_compress(store, "c", settings, args.shard_size, full=True), 1)
                out.update(full_plan_seconds=round(seconds, 3), full_todo=sum(len(s.documents) for s in full.shards))
            if args.before != "none":
                mirror_to_generation_zero(store, encoder_key)
                old = before(args.before, root, endpoint, 1 if args.docs >= 1_000_000 else args.repeats, env)
                out.update(before_ref=args.before, before_plan_seconds=round(old["seconds"], 3), before_todo=old["todo"])
        finally:
            if server is not None:
                server.stop()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
