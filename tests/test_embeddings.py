"""Round trip: summaries read back from committed shards are bit-identical to those computed (cast
to the stored dtype), and a shard is plain Parquet that pyarrow alone can read and decode."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from lloco_core.config import CompressConfig, IngestConfig
from lloco_core.model.compress import compress, encoder_settings
from lloco_core.model.segments import segment_document
from lloco_core.model.summarize import summarize_documents
from lloco_core.store.documents import ingest
from lloco_core.store.embeddings import EmbeddingStore, arrow_to_tensor, tensor_to_arrow
from lloco_core.store.storage import Store
from tests.conftest import make_text
from tests.fixtures_compress import compressor, write_docs  # noqa: F401

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
COLUMNS = ["doc_id", "doc_sha256", "segment_index", "token_start", "token_end", "text", "summary"]
DOCS = {"alpha": make_text(1, 20), "beta": make_text(2, 90), "gamma": make_text(3, 160)}


def bits(t: torch.Tensor) -> torch.Tensor:
    """Raw bits, so NaNs, -0.0 and subnormals compare exactly."""
    return t.contiguous().view({4: torch.int32, 2: torch.int16}[t.element_size()])


@pytest.mark.parametrize("dtype", DTYPES)
def test_codec_is_lossless_for_every_stored_dtype(dtype: str) -> None:
    torch.manual_seed(0)
    x = torch.randn(5, 4, 8) * 100
    x[0, 0, :6] = torch.tensor([0.0, -0.0, float("inf"), float("-inf"), 1e-40, 3e38])
    column = tensor_to_arrow(x, dtype)
    assert len(column) == 5 and column.type.list_size == 32
    back = arrow_to_tensor(column, dtype, 4, 8)
    assert back.dtype == DTYPES[dtype] and back.shape == x.shape
    assert torch.equal(bits(back), bits(x.to(DTYPES[dtype])))
    # also through a Parquet file (chunked column on read)
    table = pa.table({"summary": column})
    path = pa.BufferOutputStream()
    pq.write_table(table, path)
    read = pq.read_table(pa.BufferReader(path.getvalue()))
    assert torch.equal(bits(arrow_to_tensor(read["summary"], dtype, 4, 8)), bits(x.to(DTYPES[dtype])))


@pytest.mark.parametrize("dtype", DTYPES)
def test_shards_round_trip_and_read_with_plain_pyarrow(compressor, tiny_model: Path, tmp_path: Path, dtype: str) -> None:
    root = str(tmp_path / "store")
    ingest(IngestConfig(root=root, corpus="c", source=str(write_docs(tmp_path / "src", DOCS))))
    # batch_size 1: compress encodes each document alone, exactly as the call below does
    config = CompressConfig(root=root, corpus="c", model=str(tiny_model), shard_size=2, batch_size=1, device="cpu", stored_dtype=dtype)
    summary = compress(config)
    assert summary.encoder_key == encoder_settings(config).key
    store = EmbeddingStore(Store(root), "c", summary.encoder_key)
    S, H = compressor.summary_length, compressor.hidden_size

    computed = {}
    for doc_id, text in DOCS.items():
        segments = segment_document(compressor.tokenizer, text, 32)
        (computed[doc_id],) = summarize_documents(compressor.model, [[s.token_ids for s in segments]])
        got = store.read_document(doc_id)
        assert got.summaries.dtype == DTYPES[dtype]
        assert torch.equal(bits(got.summaries), bits(computed[doc_id].to(DTYPES[dtype])))
        # chosen segments only
        picked = store.read_document(doc_id, segments=[0, len(segments) - 1])
        assert picked.segment_index == sorted({0, len(segments) - 1})
        assert torch.equal(bits(picked.summaries), bits(got.summaries[picked.segment_index]))

    # every shard: plain pyarrow, documented columns, types and schema metadata
    shards = sorted(Path(root).rglob("shards/*.parquet"))
    assert len(shards) == 2  # 3 documents, shard size 2
    rows = []
    for shard in shards:
        table = pq.read_table(shard)
        assert table.column_names == COLUMNS
        types = dict(zip(table.schema.names, table.schema.types))
        assert types["doc_id"] == pa.string() and types["doc_sha256"] == pa.string()
        assert types["segment_index"] == types["token_start"] == types["token_end"] == pa.int32()
        assert pa.types.is_string(types["text"]) or pa.types.is_large_string(types["text"])
        assert pa.types.is_fixed_size_list(types["summary"]) and types["summary"].list_size == S * H
        assert types["summary"].value_type == {"float32": pa.float32(), "float16": pa.float16(), "bfloat16": pa.uint16()}[dtype]
        meta = {k.decode(): v.decode() for k, v in table.schema.metadata.items()}
        assert meta["encoder_key"] == summary.encoder_key
        assert (meta["summary_length"], meta["hidden_size"], meta["dtype"]) == (str(S), str(H), dtype)
        rows += table.to_pylist()
    assert sorted(r["doc_id"] for r in rows) == sorted(d for d, t in computed.items() for _ in range(t.shape[0]))
    for row in rows:
        # decode with numpy only, as any downstream reader would
        values = np.asarray(row["summary"])
        if dtype == "bfloat16":
            values = (values.astype(np.uint32) << 16).view(np.float32)
        want = computed[row["doc_id"]][row["segment_index"]].to(DTYPES[dtype]).float().numpy().reshape(-1)
        np.testing.assert_array_equal(values.astype(np.float32), want)
        assert row["doc_sha256"] == hashlib.sha256(DOCS[row["doc_id"]].encode()).hexdigest()
