"""The two training objectives of an AutoCompressor, as one module DeepSpeed can wrap.

- AutoCompressor objective (Chevalier et al. 2023): a training sequence is cut into substeps of
  `gradient_segments` segments of random lengths; each segment is encoded as
  `[softprompt ; segment ; summary tokens]` and its tokens are scored by next-token loss (over the
  substep's tokens, as one sequence); the summaries are appended to the softprompt. The softprompt
  entering a substep is detached, so gradients reach the summaries of the last k segments only.
- Compress-then-answer: a document is cut into fixed segments exactly as `compress` cuts it, its
  summaries are computed with `model.summarize.encode_segments` (the compress code path, with
  autograd), and the decoder (the same weights) reads each question through the finetune/answer
  layout (`decoder.build_decoder_inputs`, `examples.encode_example`/`label_vector`, the prompt
  templates); the loss is on the answer tokens only and flows back into the encoder.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lloco_core.model.autocompressor import LlamaAutoCompressorModel
from lloco_core.model.decoder import IGNORE_INDEX, DecoderBatch, build_decoder_inputs, pad_batch
from lloco_core.model.summarize import encode_segment, encode_segments, summary_token_embeds
from lloco_core.training.examples import label_vector


@dataclass(frozen=True)
class QADocument:
    """One document for compress-then-answer: its segments as compress cuts them, and its questions."""

    doc_id: str
    segments: list[list[int]]
    questions: list[tuple[list[int], list[int]]]  # (prompt ids, answer ids ending in EOS), as finetune encodes them


@dataclass(frozen=True)
class LMBatch:
    """AutoCompressor-objective sequences [B, T] and each substep's random segment lengths (summing to T)."""

    ids: torch.Tensor
    substeps: list[list[int]]


@dataclass
class Losses:
    total: torch.Tensor
    lm: torch.Tensor | None
    qa: torch.Tensor | None
    tokens: int  # document tokens the encoder read in this step
    positions: int  # encoder + decoder input positions of this step


def answer_loss(model: LlamaAutoCompressorModel, batch: DecoderBatch) -> torch.Tensor:
    """Mean next-token loss on labelled positions (what `labels=` gives), with the output head applied
    only where there is a label: the decoder's vocabulary projection is most of a small model's cost."""
    hidden = model.model(inputs_embeds=batch.inputs_embeds, attention_mask=batch.attention_mask, position_ids=batch.position_ids, use_cache=False).last_hidden_state
    labels = batch.labels[:, 1:].to(hidden.device)
    keep = labels != IGNORE_INDEX
    logits = model.lm_head(hidden[:, :-1][keep])
    return F.cross_entropy(logits.float(), labels[keep])


def qa_loss(model: LlamaAutoCompressorModel, documents: list[QADocument], accumulate: bool, gradient_segments: int | None) -> tuple[torch.Tensor, int, int]:
    """(loss, document tokens, input positions): compress each document once, answer all its questions."""
    summaries = encode_segments(model, [d.segments for d in documents], accumulate, gradient_segments)
    embeds, labels = [], []
    for doc, summary in zip(documents, summaries):
        n_soft = summary.shape[0] * summary.shape[1]
        for prompt_ids, answer_ids in doc.questions:
            embeds.append(build_decoder_inputs(model, summary, [*prompt_ids, *answer_ids]))
            labels.append(label_vector(n_soft, len(prompt_ids), answer_ids))
    batch = pad_batch(embeds, labels, padding_side="right")
    tokens = sum(len(s) for d in documents for s in d.segments)
    encoder_positions = sum(len(s) + (i + 1) * summary.shape[1] for d, summary in zip(documents, summaries) for i, s in enumerate(d.segments))
    return answer_loss(model, batch), tokens, encoder_positions + int(batch.attention_mask.sum())


def lm_loss(model: LlamaAutoCompressorModel, batch: LMBatch, accumulate: bool) -> tuple[torch.Tensor, int]:
    """(mean substep loss, input positions) of the AutoCompressor objective on `batch`."""
    ids = batch.ids
    summary_embeds = summary_token_embeds(model)
    softprompt = summary_embeds.new_zeros(ids.shape[0], 0, summary_embeds.shape[1])
    losses, start, positions = [], 0, 0
    for lengths in batch.substeps:
        softprompt = softprompt.detach()  # gradients stop at the substep border
        first = start
        hidden = []
        for n in lengths:
            step = encode_segment(model, softprompt, ids[:, start : start + n], summary_embeds)
            positions += ids.shape[0] * (softprompt.shape[1] + n + summary_embeds.shape[0])
            hidden.append(step.token_hidden)
            softprompt = torch.cat([softprompt, step.summaries], dim=1) if accumulate else step.summaries
            start += n
        logits = model.lm_head(torch.cat(hidden, dim=1)[:, :-1])
        losses.append(F.cross_entropy(logits.float().flatten(0, 1), ids[:, first + 1 : start].flatten()))
    return torch.stack(losses).mean(), positions


class CompressorObjective(nn.Module):
    """Wraps the AutoCompressor so one DeepSpeed engine trains it on either objective or both."""

    def __init__(self, model: nn.Module, accumulate: bool, gradient_segments: int, lm_weight: float, qa_weight: float) -> None:
        super().__init__()
        self.model = model
        self.accumulate = accumulate
        self.gradient_segments = gradient_segments
        self.lm_weight = lm_weight
        self.qa_weight = qa_weight

    def autocompressor(self) -> LlamaAutoCompressorModel:
        """The LLaMA AutoCompressor inside (under a PEFT wrapper when training LoRA)."""
        model = self.model
        return model.get_base_model() if hasattr(model, "get_base_model") else model

    def forward(self, qa: list[QADocument] | None = None, lm: LMBatch | None = None) -> Losses:
        model = self.autocompressor()
        total = None
        lm_value = qa_value = None
        tokens = positions = 0
        if lm is not None and self.lm_weight > 0:
            lm_value, lm_positions = lm_loss(model, lm, self.accumulate)
            total = self.lm_weight * lm_value
            tokens += lm.ids.numel()
            positions += lm_positions
        if qa and self.qa_weight > 0:
            qa_value, qa_tokens, qa_positions = qa_loss(model, qa, self.accumulate, self.gradient_segments)
            total = self.qa_weight * qa_value if total is None else total + self.qa_weight * qa_value
            tokens += qa_tokens
            positions += qa_positions
        if total is None:
            raise ValueError("a training step needs QA documents or LM sequences")
        return Losses(total, lm_value, qa_value, tokens, positions)
