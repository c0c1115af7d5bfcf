"""Training examples from committed embedding shards (never recomputed).

One example = `[summary vectors of the document's first segments (up to 80), in order ; prompt
tokens ; answer tokens ; EOS]` with labels only on the answer tokens and EOS: the official LLoCO
finetune layout. The ids and segments come from `model/decoder.py` (`encode_request`,
`document_segments`), the same functions inference uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from lloco_core.model.decoder import IGNORE_INDEX, MAX_DOCUMENT_SEGMENTS, document_segments, encode_request
from lloco_core.qa.dataset import QAItem
from lloco_core.qa.prompts import PromptSet
from lloco_core.store.embeddings import EmbeddingStore, SegmentEmbeddings


@dataclass(frozen=True)
class Example:
    id: str
    doc_id: str
    segments: list[int]  # segment indices read, document order
    prompt_ids: list[int]
    answer_ids: list[int]  # answer tokens then EOS

    @property
    def text_tokens(self) -> int:
        return len(self.prompt_ids) + len(self.answer_ids)


def encode_example(item: QAItem, prompts: PromptSet, tokenizer: PreTrainedTokenizerBase, max_answer_tokens: int) -> tuple[list[int], list[int]]:
    """(prompt ids, answer ids ending in EOS) for the item's first answer."""
    return encode_request(tokenizer, prompts, item, answer=item.answers[0], max_answer_tokens=max_answer_tokens)


def label_vector(n_soft: int, prompt_len: int, answer_ids: list[int]) -> torch.Tensor:
    """Labels aligned with the decoder input: IGNORE_INDEX on summaries and prompt, the ids on answer+EOS."""
    return torch.tensor([IGNORE_INDEX] * (n_soft + prompt_len) + list(answer_ids), dtype=torch.long)


def build_examples(
    items: list[QAItem],
    embeddings: EmbeddingStore,
    index: dict[str, tuple[str, str]],
    tokenizer: PreTrainedTokenizerBase,
    prompts: PromptSet,
    max_answer_tokens: int,
    max_segments: int = MAX_DOCUMENT_SEGMENTS,
) -> tuple[list[Example], dict[str, SegmentEmbeddings]]:
    """Examples plus the documents' stored summaries (read once per document, shared by its questions)."""
    documents: dict[str, SegmentEmbeddings] = {}
    examples = []
    for item in items:
        if item.doc_id not in documents:
            documents[item.doc_id] = embeddings.read_document(item.doc_id, index=index)
        doc = documents[item.doc_id]
        prompt_ids, answer_ids = encode_example(item, prompts, tokenizer, max_answer_tokens)
        chosen = document_segments(len(doc.segment_index), max_segments)
        examples.append(Example(item.id, item.doc_id, [doc.segment_index[i] for i in chosen], prompt_ids, answer_ids))
    return examples, documents


def example_summaries(example: Example, documents: dict[str, SegmentEmbeddings]) -> torch.Tensor:
    """The example's summaries [n_sel, S, H] in document order."""
    doc = documents[example.doc_id]
    rows = [doc.segment_index.index(s) for s in example.segments]
    return doc.summaries[rows]
