"""The nightly flow brings every configured corpus up to date: new documents are ingested and
compressed, a corpus with nothing new costs a listing, a corpus without sources is only compressed."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.nightly import NightlyConfig, nightly_flow
from lloco_core.config import IngestConfig
from lloco_core.store.documents import ingest
from tests.conftest import make_text

from .conftest import Stack, committed_shards

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_nightly_compresses_only_what_is_new(prefect_api: Stack, tiny_model: Path, tmp_path: Path) -> None:
    root = str(tmp_path / "store")
    news = tmp_path / "news"
    news.mkdir()
    (news / "monday.txt").write_text(make_text(1, 100))
    ingest(IngestConfig(root=root, corpus="archive", source=str(tmp_path / "news")))  # ingested elsewhere, not compressed
    corpora = [
        {"root": root, "corpus": "news", "sources": [str(news)], "model": str(tiny_model), "compress": {"device": "cpu"}},
        {"root": root, "corpus": "archive", "model": str(tiny_model), "compress": {"device": "cpu"}},
    ]
    first = nightly_flow(NightlyConfig(corpora=corpora))
    assert [(r["corpus"], r["documents_compressed"], r["documents_skipped"]) for r in first] == [("news", 1, 0), ("archive", 1, 0)]

    (news / "tuesday.txt").write_text(make_text(2, 100))  # the next night, one new document
    second = nightly_flow(NightlyConfig(corpora=corpora))
    assert [(r["corpus"], r["documents_compressed"], r["documents_skipped"]) for r in second] == [("news", 1, 1), ("archive", 0, 1)]
    assert len(committed_shards(root, "news", tiny_model)) == 2 and len(committed_shards(root, "archive", tiny_model)) == 1
