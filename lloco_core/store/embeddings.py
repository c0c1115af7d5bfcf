"""Embedding shards: one Parquet row per segment, committed by a record written last.

Row: doc_id, doc_sha256, segment_index, token_start, token_end, text, summary (a fixed-size list of
summary_length * hidden_size numbers). The file's schema metadata names encoder_key,
summary_length, hidden_size and dtype, so pyarrow, DuckDB or Polars can read a shard with no lloco
code. bfloat16 is stored as its raw bits in uint16: lossless, half the bytes of float32.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from lloco_core.errors import InputError
from lloco_core.store.commitlog import CommitLog
from lloco_core.store.documents import DocumentRef, DocumentTable
from lloco_core.store.storage import Store

STORED_DTYPES: dict[str, tuple[torch.dtype, pa.DataType]] = {
    "float32": (torch.float32, pa.float32()),
    "float16": (torch.float16, pa.float16()),
    "bfloat16": (torch.bfloat16, pa.uint16()),
}


def shard_schema(summary_length: int, hidden_size: int, dtype: str, encoder_key: str, segment_length: int) -> pa.Schema:
    value_type = STORED_DTYPES[dtype][1]
    return pa.schema(
        [
            ("doc_id", pa.string()),
            ("doc_sha256", pa.string()),
            ("segment_index", pa.int32()),
            ("token_start", pa.int32()),
            ("token_end", pa.int32()),
            ("text", pa.large_string()),
            ("summary", pa.list_(value_type, summary_length * hidden_size)),
        ],
        metadata={
            "encoder_key": encoder_key,
            "summary_length": str(summary_length),
            "hidden_size": str(hidden_size),
            "dtype": dtype,
            "segment_length": str(segment_length),
        },
    )


def tensor_to_arrow(summaries: torch.Tensor, dtype: str) -> pa.FixedSizeListArray:
    """[n, S, H] -> n fixed-size lists of S*H values in the stored dtype."""
    torch_dtype, _ = STORED_DTYPES[dtype]
    flat = summaries.detach().to("cpu", torch_dtype).reshape(summaries.shape[0], -1).contiguous()
    if dtype == "bfloat16":
        values = flat.view(torch.int16).numpy().view(np.uint16).reshape(-1)
    else:
        values = flat.numpy().reshape(-1)
    return pa.FixedSizeListArray.from_arrays(pa.array(values), flat.shape[1])


def arrow_to_tensor(column: pa.ChunkedArray | pa.FixedSizeListArray, dtype: str, summary_length: int, hidden_size: int) -> torch.Tensor:
    """Inverse of `tensor_to_arrow`: n fixed-size lists -> [n, S, H] in the stored dtype."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    values = column.flatten().to_numpy(zero_copy_only=False)
    if dtype == "bfloat16":
        tensor = torch.from_numpy(values.view(np.int16).copy()).view(torch.bfloat16)
    else:
        tensor = torch.from_numpy(values.copy())
    return tensor.reshape(len(column), summary_length, hidden_size)


@dataclass(frozen=True)
class SegmentEmbeddings:
    """The stored segments of one document version, in segment order."""

    doc_id: str
    doc_sha256: str
    segment_index: list[int]
    token_start: list[int]
    token_end: list[int]
    text: list[str]
    summaries: torch.Tensor  # [n_segments, S, H], stored dtype


def list_encoders(store: Store, corpus: str) -> list[str]:
    """Encoder keys under which this corpus has at least one committed shard."""
    base = store.path(corpus, "embeddings")
    return [p.rsplit("/", 1)[-1] for p in store.list(base) if store.list(f"{p}/_commits", ".json")]


def pick_encoder(store: Store, corpus: str, encoder_key: str | None) -> str:
    """The one encoder key to read, or a clear error when there are none or several."""
    keys = list_encoders(store, corpus)
    if encoder_key is not None:
        if encoder_key not in keys:
            raise InputError(f"corpus {corpus!r} has no committed embeddings under encoder key {encoder_key!r} (it has: {keys or 'none'})")
        return encoder_key
    if not keys:
        raise InputError(f"corpus {corpus!r} has no committed embeddings in {store.uri(store.path(corpus))}: run `lloco compress` first")
    if len(keys) > 1:
        raise InputError(f"corpus {corpus!r} has embeddings from several encoders {keys}: pick one with --encoder-key")
    return keys[0]


class EmbeddingStore:
    """`<root>/<corpus>/embeddings/<encoder-key>/`: shards plus commit records."""

    def __init__(self, store: Store, corpus: str, encoder_key: str) -> None:
        self.store = store
        self.corpus = corpus
        self.encoder_key = encoder_key
        self.log = CommitLog(store, store.path(corpus, "embeddings", encoder_key))

    @property
    def uri(self) -> str:
        return self.store.uri(self.log.prefix)

    def committed(self) -> dict[tuple[str, str], str]:
        """(doc_id, sha256) -> the shard holding it; the first commit wins, so nothing is read twice."""
        held: dict[tuple[str, str], str] = {}
        for record in self.log.records():
            for doc_id, sha in record["documents"].items():
                held.setdefault((doc_id, sha), record["shard"])
        return held

    def write_shard(self, name: str, table: pa.Table, documents: dict[str, str], supersedes: dict[str, str]) -> dict[str, Any]:
        """Write the shard whole, then commit it. Same name for the same inputs: a retry overwrites."""
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd", row_group_size=1024)
        shard = f"shards/{name}.parquet"
        self.store.write_bytes(self.log.data_path(shard), buffer.getvalue())
        return self.log.commit(name, {"shard": shard, "documents": documents, "supersedes": supersedes, "segments": table.num_rows})

    @functools.lru_cache(maxsize=8)
    def read_shard(self, shard: str) -> pa.Table:
        return pq.read_table(self.log.data_path(shard), filesystem=self.store.fs)

    def current_index(self, documents: dict[str, DocumentRef] | None = None) -> dict[str, tuple[str, str]]:
        """doc_id -> (current sha256, shard) for documents whose current version is compressed.

        Pass `documents` (DocumentTable.current()) when the caller already read it."""
        held = self.committed()
        index = {}
        current = documents if documents is not None else DocumentTable(self.store, self.corpus).current()
        for doc_id, ref in current.items():
            shard = held.get((doc_id, ref.sha256))
            if shard is not None:
                index[doc_id] = (ref.sha256, shard)
        return index

    def read_document(self, doc_id: str, segments: list[int] | None = None, index: dict[str, tuple[str, str]] | None = None) -> SegmentEmbeddings:
        """A document's current summaries (all segments, or the chosen ones) from committed shards."""
        index = index if index is not None else self.current_index()
        if doc_id not in index:
            raise InputError(f"document {doc_id!r} has no committed embeddings in corpus {self.corpus!r} under encoder {self.encoder_key}")
        sha, shard = index[doc_id]
        table = self.read_shard(shard)
        mask = pc.and_(pc.equal(table["doc_id"], doc_id), pc.equal(table["doc_sha256"], sha))
        rows = table.filter(mask).sort_by("segment_index")
        if segments is not None:
            rows = rows.filter(pc.is_in(rows["segment_index"], pa.array(segments, pa.int32())))
        meta = table.schema.metadata
        return SegmentEmbeddings(
            doc_id,
            sha,
            rows["segment_index"].to_pylist(),
            rows["token_start"].to_pylist(),
            rows["token_end"].to_pylist(),
            rows["text"].to_pylist(),
            arrow_to_tensor(rows["summary"], meta[b"dtype"].decode(), int(meta[b"summary_length"]), int(meta[b"hidden_size"])),
        )

    def read_all(self) -> pa.Table:
        """Every current segment of the corpus, sorted by doc_id then segment_index."""
        index = self.current_index()
        wanted: dict[str, set[tuple[str, str]]] = {}
        for doc_id, (sha, shard) in index.items():
            wanted.setdefault(shard, set()).add((doc_id, sha))
        tables = []
        for shard, pairs in sorted(wanted.items()):
            table = self.read_shard(shard)
            rows = zip(table["doc_id"].to_pylist(), table["doc_sha256"].to_pylist())
            mask = pa.array([row in pairs for row in rows])
            tables.append(table.filter(mask))
        if not tables:
            raise InputError(f"corpus {self.corpus!r} has no current documents with committed embeddings under {self.encoder_key}")
        return pa.concat_tables(tables).sort_by([("doc_id", "ascending"), ("segment_index", "ascending")])


def export(store: Store, corpus: str, out: str, encoder_key: str | None = None, endpoint_url: str | None = None) -> dict[str, Any]:
    """All current segments of a corpus in one Parquet file with the shard schema, written atomically."""
    key = pick_encoder(store, corpus, encoder_key)
    table = EmbeddingStore(store, corpus, key).read_all()
    folder, name = out.rsplit("/", 1) if "/" in out else (".", out)
    target = Store(folder, endpoint_url)
    with target.open_atomic(f"{target.root}/{name}") as f:
        pq.write_table(table, f, compression="zstd")
    return {"out": out, "encoder_key": key, "rows": table.num_rows, "documents": len(set(table["doc_id"].to_pylist()))}
