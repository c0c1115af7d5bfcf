"""Segmentation: one tokenization without special tokens, cut into fixed-length segments whose
texts tile the document (so stored segment text is exactly what was encoded)."""

from __future__ import annotations

import pytest

from lloco_core.model.segments import segment_document
from tests.conftest import make_text
from tests.fixtures_compress import chunk, compressor, text_with_tokens, token_ids  # noqa: F401

SEG = 32


@pytest.mark.parametrize("n_tokens", [5, SEG, 3 * SEG, 3 * SEG + 7])
def test_segments_cut_tokens_and_tile_text(compressor, n_tokens: int) -> None:
    tok = compressor.tokenizer
    text = text_with_tokens(tok, n_tokens, seed=n_tokens)
    ids = token_ids(tok, text)
    segments = segment_document(tok, text, SEG)

    assert [s.token_ids for s in segments] == chunk(ids, SEG)
    assert len(segments) == -(-n_tokens // SEG)
    assert [s.index for s in segments] == list(range(len(segments)))
    assert [(s.token_start, s.token_end) for s in segments] == [(i, min(i + SEG, n_tokens)) for i in range(0, n_tokens, SEG)]
    assert "".join(s.text for s in segments) == text
    assert all(s.text for s in segments)
    # no BOS/EOS: LLoCO tokenizes documents without special tokens
    assert tok.bos_token_id not in ids and tok.eos_token_id not in ids


def test_segment_text_covers_its_tokens(compressor) -> None:
    """Each segment's text re-tokenizes to (about) its tokens: the text column is usable for retrieval."""
    tok = compressor.tokenizer
    text = make_text(7, 300)
    for seg in segment_document(tok, text, SEG):
        decoded = tok.decode(seg.token_ids)
        assert decoded.strip() == seg.text.strip()


def test_empty_text_has_no_segments(compressor) -> None:
    assert segment_document(compressor.tokenizer, "", SEG) == []
