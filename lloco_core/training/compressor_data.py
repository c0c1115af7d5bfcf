"""Training data for compressor training, drawn deterministically from the step number.

Every batch is a pure function of (seed, step, rank), so a resumed run draws exactly the batches
an uninterrupted run would have drawn, with nothing to save but the step.

- AutoCompressor objective: the corpus's documents tokenized without special tokens (as compress
  tokenizes them), joined with EOS into one stream, cut into sequences of
  `lm_segments x segment_length` tokens; each substep gets random segment lengths.
- Compress-then-answer: each QA item's document cut exactly as compress cuts it
  (`segments.segment_document`), the same first segments read (`decoder.document_segments`), and
  the question/answer encoded exactly as finetune encodes it (`examples.encode_example`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from lloco_core.model.decoder import document_segments
from lloco_core.model.segments import segment_document
from lloco_core.qa.dataset import QAItem
from lloco_core.qa.prompts import PromptSet
from lloco_core.training.compressor_config import CompressorConfig
from lloco_core.training.compressor_objective import LMBatch, QADocument
from lloco_core.training.examples import encode_example
from lloco_core.training.finetune import epoch_order

MIN_SEGMENT_TOKENS = 2


def random_segment_lengths(total: int, segments: int, generator: torch.Generator, min_length: int = MIN_SEGMENT_TOKENS) -> list[int]:
    """`segments` lengths of at least `min_length` summing to `total`, with uniformly random cut points."""
    free = total - min_length * segments
    if free < 0:
        raise ValueError(f"{total} tokens cannot hold {segments} segments of at least {min_length} tokens")
    if segments == 1:
        return [total]
    cuts = sorted(torch.randperm(free + 1, generator=generator)[: segments - 1].tolist())
    bounds = [0, *cuts, free]
    return [bounds[i + 1] - bounds[i] + min_length for i in range(segments)]


def token_stream(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> list[int]:
    """Documents tokenized without special tokens, EOS after each one."""
    stream: list[int] = []
    for text in texts:
        stream.extend(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])
        stream.append(tokenizer.eos_token_id)
    return stream


def _slice(order_length: int, step: int, per_step: int, seed: int) -> list[int]:
    """Indices of optimizer step `step` (1-based) in a stream of seeded per-epoch permutations."""
    start = (step - 1) * per_step
    orders: dict[int, list[int]] = {}
    out = []
    for i in range(start, start + per_step):
        epoch, position = divmod(i, order_length)
        if epoch not in orders:
            orders[epoch] = epoch_order(order_length, epoch, seed, 1)
        out.append(orders[epoch][position])
    return out


@dataclass
class LMData:
    """Fixed-length training sequences cut from the corpus's token stream."""

    sequences: torch.Tensor  # [N, T]
    config: CompressorConfig

    @classmethod
    def build(cls, stream: list[int], config: CompressorConfig, segment_length: int) -> LMData:
        length = config.lm_segments * segment_length
        count = len(stream) // length
        if count == 0:
            raise ValueError(f"the corpus has {len(stream)} tokens, fewer than one training sequence of {length}")
        return cls(torch.tensor(stream[: count * length], dtype=torch.long).view(count, length), config)

    def batch(self, step: int, rank: int = 0, world_size: int = 1) -> LMBatch:
        config = self.config
        rows = _slice(len(self.sequences), step, config.lm_sequences, config.seed)[rank::world_size]
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
        length = self.sequences.shape[1] // config.lm_substeps
        substeps = [random_segment_lengths(length, config.gradient_segments, generator) for _ in range(config.lm_substeps)]
        ids = self.sequences[rows][:, : length * config.lm_substeps]
        return LMBatch(ids, substeps)


def qa_documents(
    items: list[QAItem], texts: dict[str, str], tokenizer: PreTrainedTokenizerBase, prompts: PromptSet, config: CompressorConfig, segment_length: int
) -> list[QADocument]:
    """One QADocument per document with questions, in doc_id order."""
    questions: dict[str, list[tuple[list[int], list[int]]]] = {}
    encoded: dict[tuple, tuple[list[int], list[int]]] = {}  # QA files repeat questions and answers across documents
    for item in items:
        key = (item.task, item.question, tuple(item.options or ()), item.answers[0])
        if key not in encoded:
            encoded[key] = encode_example(item, prompts, tokenizer, config.max_answer_tokens)
        questions.setdefault(item.doc_id, []).append(encoded[key])
    documents = []
    for doc_id in sorted(questions):
        segments = segment_document(tokenizer, texts[doc_id], segment_length)
        read = document_segments(len(segments), config.max_segments)
        documents.append(QADocument(doc_id, [segments[i].token_ids for i in read], questions[doc_id]))
    return documents


def qa_batch(documents: list[QADocument], step: int, config: CompressorConfig, rank: int = 0, world_size: int = 1) -> list[QADocument]:
    """The step's documents, each with all its questions or a seeded sample of them."""
    chosen = [documents[i] for i in _slice(len(documents), step, config.qa_documents, config.seed)[rank::world_size]]
    k = config.questions_per_document
    if not k:
        return chosen
    rng = random.Random(config.seed * 1_000_003 + step)
    return [QADocument(d.doc_id, d.segments, rng.sample(d.questions, min(k, len(d.questions)))) for d in chosen]
