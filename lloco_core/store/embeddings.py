"""Embedding shards: one Parquet row per segment, committed by a record written last.

Row: doc_id, doc_sha256, segment_index, token_start, token_end, text, summary (a fixed-size list of
summary_length * hidden_size numbers). The file's schema metadata names encoder_key,
summary_length, hidden_size and dtype, so pyarrow, DuckDB or Polars can read a shard with no lloco
code. bfloat16 is stored as its raw bits in uint16: lossless, half the bytes of float32.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lloco_core.errors import InputError, StoreError
from lloco_core.store.datalog import DataLog, LogState
from lloco_core.store.documents import DocumentRef, DocumentTable
from lloco_core.store.records import FileSum, Problem, ShardRecord, shard_digest
from lloco_core.store.storage import Store

if TYPE_CHECKING:  # torch loads only where tensors are made: `lloco status`/`verify` never need it
    import torch

SHARD_CACHE = 8
STORED_DTYPES: dict[str, pa.DataType] = {"float32": pa.float32(), "float16": pa.float16(), "bfloat16": pa.uint16()}
"""Stored dtype name -> Parquet value type (bfloat16 as its raw bits)."""


def shard_schema(summary_length: int, hidden_size: int, dtype: str, encoder_key: str, segment_length: int) -> pa.Schema:
    value_type = STORED_DTYPES[dtype]
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
    import torch

    torch_dtype = getattr(torch, dtype)
    flat = summaries.detach().to("cpu", torch_dtype).reshape(summaries.shape[0], -1).contiguous()
    if dtype == "bfloat16":
        values = flat.view(torch.int16).numpy().view(np.uint16).reshape(-1)
    else:
        values = flat.numpy().reshape(-1)
    return pa.FixedSizeListArray.from_arrays(pa.array(values), flat.shape[1])


def arrow_to_tensor(column: pa.ChunkedArray | pa.FixedSizeListArray, dtype: str, summary_length: int, hidden_size: int) -> torch.Tensor:
    """Inverse of `tensor_to_arrow`: n fixed-size lists -> [n, S, H] in the stored dtype."""
    import torch

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
    """Encoder keys under which this corpus has at least one commit record or snapshot."""
    base = store.path(corpus, "embeddings")
    return [p.rsplit("/", 1)[-1] for p in store.list_dirs(base) if store.list(f"{p}/_commits", ".json") or store.list(f"{p}/_snapshots", ".json")]


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


def shard_name(encoder_key: str, documents: dict[str, str] | list[tuple[str, str]]) -> str:
    """A shard is named by its encoder key and the document versions it holds."""
    return "shard-" + shard_digest(encoder_key, documents)


class EmbeddingStore:
    """`<root>/<corpus>/embeddings/<encoder-key>/`: shards plus commit records.

    A shard record carries the shard's size and sha256 and is named by the digest of the encoder
    key and the (doc_id, sha256) pairs it holds, so a record cannot claim documents held elsewhere.
    Every shard read is checked against that sha256 before a number leaves this class."""

    def __init__(self, store: Store, corpus: str, encoder_key: str) -> None:
        self.store = store
        self.corpus = corpus
        self.encoder_key = encoder_key
        self.data: DataLog[ShardRecord] = DataLog(store, store.path(corpus, "embeddings", encoder_key), ShardRecord, "shards", "first_per_version", self._check)
        self.log = self.data.log
        self.problems: list[Problem] = []
        self._state: LogState[ShardRecord] | None = None
        self._tables: dict[str, pa.Table] = {}

    def _check(self, record: ShardRecord) -> str | None:
        if record.shard is None:
            return None if record.drop and not record.documents else "a record without 'shard' must only drop files"
        name = shard_name(self.encoder_key, record.documents)
        if record.name != name or record.shard != f"shards/{name}.parquet":
            return f"shard {record.shard!r} does not hold the documents the record lists (its name is their digest under this encoder)"
        if record.format >= 2 and record.shard not in record.files:
            return f"no checksum for {record.shard!r}"
        return None

    @property
    def uri(self) -> str:
        return self.store.uri(self.log.prefix)

    def state(self, refresh: bool = False) -> LogState[ShardRecord]:
        if self._state is None or refresh:
            self._state = self.data.state(entries=True)
            self.problems = [*self._state.problems, *(Problem(self.store.uri(self.log.data_path(f)), why) for f, why in sorted(self._state.bad.items()))]
        return self._state

    def committed(self, with_bad: bool = False) -> dict[tuple[str, str], str]:
        """(doc_id, sha256) -> the usable shard holding it; the first commit wins, so nothing is read twice.

        `with_bad`: a version whose only copy is in a shard a listing shows missing or resized maps
        to that shard, so that reading it fails naming the file (readers), instead of the version
        looking uncompressed (which is what planning wants)."""
        state = self.state()
        floors = state.floors
        held: dict[tuple[str, str], tuple[bool, int, str]] = {}
        for doc_id, sha, shard, ns in state.entries or []:
            usable = ns > floors.get(shard, ns)
            if usable or (with_bad and shard in state.bad and state.files[shard].live and ns > state.files[shard].dropped_ns):
                rank = (not usable, ns, shard)
                known = held.get((doc_id, sha))
                if known is None or rank < known:
                    held[(doc_id, sha)] = rank
        return {key: shard for key, (_, _, shard) in held.items()}

    def write_shard(self, name: str, table: pa.Table, documents: dict[str, str], supersedes: dict[str, str]) -> ShardRecord:
        """Write the shard whole, then commit it with its checksum. Same name for the same inputs: a retry overwrites."""
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd", row_group_size=1024)
        data = buffer.getvalue()
        shard = f"shards/{name}.parquet"
        self.store.write_bytes(self.log.data_path(shard), data)
        fields = {"shard": shard, "documents": documents, "supersedes": supersedes, "segments": table.num_rows, "files": {shard: FileSum.of(data)}}
        return self.log.commit(name, fields)

    def read_shard(self, shard: str) -> pa.Table:
        """A committed shard, its bytes checked against the checksum of its commit (StoreError names it)."""
        if shard not in self._tables:
            data = self.data.read_verified(shard, self.state().files.get(shard))
            if len(self._tables) >= SHARD_CACHE:
                self._tables.pop(next(iter(self._tables)))
            self._tables[shard] = pq.read_table(pa.BufferReader(data))
        return self._tables[shard]

    def schema_metadata(self, required: bool = True) -> dict[bytes, bytes]:
        """Schema metadata of the committed shards (encoder settings), from the first usable one."""
        state = self.state()
        for shard, info in sorted(state.files.items()):
            if info.live and shard not in state.bad:
                return self.read_shard(shard).schema.metadata
        if required:
            raise InputError(f"corpus {self.corpus!r} has no usable shard under {self.encoder_key}")
        return {}

    def current_index(self, documents: dict[str, DocumentRef] | None = None) -> dict[str, tuple[str, str]]:
        """doc_id -> (current sha256, shard) for documents whose current version is compressed.

        Pass `documents` (DocumentTable.current()) when the caller already read it."""
        held = self.committed(with_bad=True)
        index = {}
        current = documents if documents is not None else DocumentTable(self.store, self.corpus).current()
        for doc_id, ref in current.items():
            shard = held.get((doc_id, ref.sha256))
            if shard is not None:
                index[doc_id] = (ref.sha256, shard)
        return index

    def _rows_of(self, table: pa.Table, doc_id: str, sha: str, shard: str) -> pa.Table:
        rows = table.filter(pc.and_(pc.equal(table["doc_id"], doc_id), pc.equal(table["doc_sha256"], sha))).sort_by("segment_index")
        if rows.num_rows == 0:
            raise StoreError(f"{self.store.uri(self.log.data_path(shard))}: holds no segments of document {doc_id!r} that its commit record lists")
        return rows

    def read_document(self, doc_id: str, segments: list[int] | None = None, index: dict[str, tuple[str, str]] | None = None) -> SegmentEmbeddings:
        """A document's current summaries (all segments, or the chosen ones) from committed shards."""
        index = index if index is not None else self.current_index()
        if doc_id not in index:
            raise InputError(f"document {doc_id!r} has no committed embeddings in corpus {self.corpus!r} under encoder {self.encoder_key}")
        sha, shard = index[doc_id]
        table = self.read_shard(shard)
        rows = self._rows_of(table, doc_id, sha, shard)
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

    def left_out(self, shard: str, error: BaseException) -> Problem:
        """A shard a reader skipped, named by its path (the error's own text already leads with it)."""
        uri = self.store.uri(self.log.data_path(shard))
        return Problem(uri, f"left out: {str(error).removeprefix(uri + ': ')}")

    def read_all(self, documents: dict[str, DocumentRef] | None = None) -> pa.Table:
        """Every current segment of the corpus, sorted by doc_id then segment_index.

        A shard that fails its checksum is left out whole and named in `self.problems`."""
        index = self.current_index(documents)
        wanted: dict[str, set[tuple[str, str]]] = {}
        for doc_id, (sha, shard) in index.items():
            wanted.setdefault(shard, set()).add((doc_id, sha))
        tables = []
        for shard, pairs in sorted(wanted.items()):
            try:
                table = self.read_shard(shard)
            except (StoreError, OSError, pa.ArrowException) as err:
                self.problems.append(self.left_out(shard, err))
                continue
            rows = zip(table["doc_id"].to_pylist(), table["doc_sha256"].to_pylist())
            mask = pa.array([row in pairs for row in rows])
            found = table.filter(mask)
            held = set(zip(found["doc_id"].to_pylist(), found["doc_sha256"].to_pylist()))
            if held != pairs:
                self.problems.append(Problem(self.store.uri(self.log.data_path(shard)), f"left out: holds no segments of {len(pairs - held)} document(s) its commit record lists"))
                continue
            tables.append(found)
        if not tables:
            raise InputError(f"corpus {self.corpus!r} has no current documents with committed embeddings under {self.encoder_key}")
        return pa.concat_tables(tables).sort_by([("doc_id", "ascending"), ("segment_index", "ascending")])


def export(store: Store, corpus: str, out: str, encoder_key: str | None = None, endpoint_url: str | None = None) -> dict[str, Any]:
    """All current segments of a corpus in one Parquet file with the shard schema, written atomically.

    Problems (unreadable records, missing or corrupt files) are listed in the result by path; the
    rows they would have given are left out, never guessed."""
    store.require_root()
    key = pick_encoder(store, corpus, encoder_key)
    documents = DocumentTable(store, corpus)
    embeddings = EmbeddingStore(store, corpus, key)
    table = embeddings.read_all(documents.current())
    folder, name = out.rsplit("/", 1) if "/" in out else (".", out)
    target = Store(folder, endpoint_url)
    with target.open_atomic(f"{target.root}/{name}") as f:
        pq.write_table(table, f, compression="zstd")
    problems = [p.as_dict() for p in [*documents.problems, *embeddings.problems]]
    return {"out": out, "encoder_key": key, "rows": table.num_rows, "documents": len(set(table["doc_id"].to_pylist())), "problems": problems}
