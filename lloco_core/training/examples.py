"""Training examples from committed embedding shards (never recomputed).

One example = `[summary vectors of the selected segments, in document order ; prompt (BOS first) ;
answer tokens ; EOS]` with labels only on the answer tokens and EOS. When a document has more
segments than fit the decoder window next to the prompt and answer, BM25 keeps the segments most
relevant to the question (`retrieval.select_segments`), still in document order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from lloco_core.model.decoder import IGNORE_INDEX, context_budget_segments
from lloco_core.qa.dataset import QAItem
from lloco_core.qa.prompts import PromptSet
from lloco_core.qa.retrieval import select_segments
from lloco_core.store.embeddings import EmbeddingStore, SegmentEmbeddings


@dataclass(frozen=True)
class Example:
    id: str
    doc_id: str
    segments: list[int]  # selected segment indices, document order
    prompt_ids: list[int]  # BOS first
    answer_ids: list[int]  # answer tokens then EOS

    @property
    def text_tokens(self) -> int:
        return len(self.prompt_ids) + len(self.answer_ids)


def encode_example(item: QAItem, prompts: PromptSet, tokenizer: PreTrainedTokenizerBase, max_answer_tokens: int) -> tuple[list[int], list[int]]:
    """(prompt ids with BOS first, answer ids ending in EOS) for the item's first answer."""
    template = prompts.for_task(item.task)
    prompt = template.render(item.question, item.options)
    prompt_ids = [tokenizer.bos_token_id, *tokenizer(prompt, add_special_tokens=False)["input_ids"]]
    answer = tokenizer(template.answer_text(item.answers[0]), add_special_tokens=False)["input_ids"][:max_answer_tokens]
    return prompt_ids, [*answer, tokenizer.eos_token_id]


def label_vector(n_soft: int, prompt_len: int, answer_ids: list[int]) -> torch.Tensor:
    """Labels aligned with the decoder input: IGNORE_INDEX on summaries and prompt, the ids on answer+EOS."""
    return torch.tensor([IGNORE_INDEX] * (n_soft + prompt_len) + list(answer_ids), dtype=torch.long)


def build_examples(
    items: list[QAItem],
    embeddings: EmbeddingStore,
    index: dict[str, tuple[str, str]],
    tokenizer: PreTrainedTokenizerBase,
    prompts: PromptSet,
    summary_length: int,
    window: int,
    max_answer_tokens: int,
) -> tuple[list[Example], dict[str, SegmentEmbeddings]]:
    """Examples plus the documents' stored summaries (read once per document, shared by its questions)."""
    documents: dict[str, SegmentEmbeddings] = {}
    examples = []
    for item in items:
        if item.doc_id not in documents:
            documents[item.doc_id] = embeddings.read_document(item.doc_id, index=index)
        doc = documents[item.doc_id]
        prompt_ids, answer_ids = encode_example(item, prompts, tokenizer, max_answer_tokens)
        budget = context_budget_segments(window, summary_length, len(prompt_ids), len(answer_ids))
        chosen = select_segments(item.question, doc.text, budget)
        examples.append(Example(item.id, item.doc_id, [doc.segment_index[i] for i in chosen], prompt_ids, answer_ids))
    return examples, documents


def example_summaries(example: Example, documents: dict[str, SegmentEmbeddings]) -> torch.Tensor:
    """The example's selected summaries [n_sel, S, H] in document order."""
    doc = documents[example.doc_id]
    rows = [doc.segment_index.index(s) for s in example.segments]
    return doc.summaries[rows]
