"""Tokenize a document once (no special tokens, as LLoCO's preprocessing does) and cut it into
segments of `segment_length` tokens; the last may be shorter. Each segment keeps its token span
and the exact slice of text it covers, for retrieval and audit."""

from __future__ import annotations

from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class Segment:
    index: int
    token_ids: list[int]
    token_start: int
    token_end: int
    text: str


def segment_document(tokenizer: PreTrainedTokenizerBase, text: str, segment_length: int) -> list[Segment]:
    """Segments that tile the document: concatenating their texts gives the document back."""
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    ids: list[int] = encoding["input_ids"]
    offsets: list[tuple[int, int]] = encoding["offset_mapping"]
    starts = list(range(0, len(ids), segment_length))
    char_starts = [0 if i == 0 else offsets[s][0] for i, s in enumerate(starts)] + [len(text)]
    return [
        Segment(i, ids[s : s + segment_length], s, min(s + segment_length, len(ids)), text[char_starts[i] : char_starts[i + 1]])
        for i, s in enumerate(starts)
    ]
