"""GPU-only checks (skipped without CUDA): the bf16 CUDA encoder agrees with the float32 CPU one,
and the bf16 stored dtype round-trips what the GPU computed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lloco_core.config import CompressConfig, IngestConfig
from lloco_core.model.autocompressor import load_compressor
from lloco_core.model.compress import compress
from lloco_core.model.segments import segment_document
from lloco_core.model.summarize import summarize_documents
from lloco_core.store.documents import ingest
from lloco_core.store.embeddings import EmbeddingStore, pick_encoder
from lloco_core.store.storage import Store
from tests.conftest import make_text

pytestmark = pytest.mark.gpu


def test_cuda_bf16_summaries_agree_with_cpu_float32(tiny_model: Path) -> None:
    cpu, gpu = load_compressor(str(tiny_model), "cpu"), load_compressor(str(tiny_model), "cuda")
    assert gpu.dtype == torch.bfloat16
    docs = [[s.token_ids for s in segment_document(cpu.tokenizer, make_text(seed, 200 + 90 * seed), 32)] for seed in range(4)]
    for want, got in zip(summarize_documents(cpu.model, docs), summarize_documents(gpu.model, docs)):
        cosine = torch.nn.functional.cosine_similarity(want.flatten(1), got.float().cpu().flatten(1))
        assert cosine.min() > 0.99


def test_cuda_compress_stores_bf16_bits(tiny_model: Path, tmp_path: Path) -> None:
    root = str(tmp_path / "store")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_text(make_text(1, 300))
    ingest(IngestConfig(corpus="c", source=str(tmp_path / "src"), root=root))
    summary = compress(CompressConfig(corpus="c", model=str(tiny_model), root=root, device="cuda"))
    store = Store(root)
    stored = EmbeddingStore(store, "c", pick_encoder(store, "c", summary.encoder_key)).read_document("a")
    assert stored.summaries.dtype == torch.bfloat16
    gpu = load_compressor(str(tiny_model), "cuda")
    ids = [s.token_ids for s in segment_document(gpu.tokenizer, make_text(1, 300), 32)]
    assert torch.equal(summarize_documents(gpu.model, [ids])[0].cpu(), stored.summaries)
