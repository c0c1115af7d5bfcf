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
from transformers.cache_utils import DynamicCache

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
    return _labelled_loss(model, hidden, batch.labels)


def shared_prefix_length(prompts: list[list[int]]) -> int:
    """Tokens every prompt starts with, leaving at least the last prompt token of each to its own row
    (the answer's first label is predicted from there)."""
    shortest = min(len(p) for p in prompts)
    length = 0
    while length < shortest - 1 and all(p[length] == prompts[0][length] for p in prompts):
        length += 1
    return length


def answer_loss_shared_prefix(model: LlamaAutoCompressorModel, rows: list[tuple[int, torch.Tensor, torch.Tensor]], prefixes: list[torch.Tensor]) -> torch.Tensor:
    """`answer_loss` of full decoder inputs that share their first positions per document, computed
    once per document: the shared positions `prefixes[d]` ([P, H], one length for all) run once with a
    KV cache, then each row's rest `(d, embeds, labels)` runs against its document's cache. Causal
    attention makes this exactly the full computation; a document's 12 questions then cost one
    prompt instead of twelve."""
    length = prefixes[0].shape[0]
    cache = model.model(inputs_embeds=torch.stack(prefixes), use_cache=True).cache
    owner = torch.tensor([d for d, _, _ in rows], device=prefixes[0].device)
    per_row = DynamicCache([(layer.keys.index_select(0, owner), layer.values.index_select(0, owner)) for layer in cache.layers])
    batch = pad_batch([e for _, e, _ in rows], [lab for _, _, lab in rows], padding_side="right")
    mask = torch.cat([batch.attention_mask.new_ones(len(rows), length), batch.attention_mask], dim=1)
    hidden = model.model(
        inputs_embeds=batch.inputs_embeds, attention_mask=mask, position_ids=batch.position_ids + length, cache=per_row, use_cache=True
    ).last_hidden_state
    return _labelled_loss(model, hidden, batch.labels)


def _labelled_loss(model: LlamaAutoCompressorModel, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    labels = labels[:, 1:].to(hidden.device)
    keep = labels != IGNORE_INDEX
    return F.cross_entropy(model.lm_head(hidden[:, :-1][keep]).float(), labels[keep])


def qa_loss(model: LlamaAutoCompressorModel, documents: list[QADocument], accumulate: bool, gradient_segments: int | None) -> tuple[torch.Tensor, int, int]:
    """(loss, document tokens, input positions): compress each document once, answer all its questions.

    Each question's decoder input is built by `build_decoder_inputs` and its labels by `label_vector`,
    exactly as finetune builds them; positions every question of a document shares (its summaries
    and the template's opening) run once per document unless gradient checkpointing is on."""
    summaries = encode_segments(model, [d.segments for d in documents], accumulate, gradient_segments)
    inputs = []  # (document, full decoder input, labels, shared prefix length)
    for d, (doc, summary) in enumerate(zip(documents, summaries)):
        n_soft = summary.shape[0] * summary.shape[1]
        shared = n_soft + shared_prefix_length([p for p, _ in doc.questions])
        for prompt_ids, answer_ids in doc.questions:
            inputs.append((d, build_decoder_inputs(model, summary, [*prompt_ids, *answer_ids]), label_vector(n_soft, len(prompt_ids), answer_ids), shared))
    tokens = sum(len(s) for d in documents for s in d.segments)
    encoder_positions = sum(len(s) + (i + 1) * summary.shape[1] for d, summary in zip(documents, summaries) for i, s in enumerate(d.segments))
    shared = min(p for *_, p in inputs)
    if model.is_activation_checkpointing or shared == 0:  # HF turns the cache off under checkpointing
        batch = pad_batch([e for _, e, _, _ in inputs], [lab for _, _, lab, _ in inputs], padding_side="right")
        return answer_loss(model, batch), tokens, encoder_positions + int(batch.attention_mask.sum())
    prefixes = {d: e[:shared] for d, e, _, _ in inputs}
    rows = [(d, e[shared:], lab[shared:]) for d, e, lab, _ in inputs]
    loss = answer_loss_shared_prefix(model, rows, [prefixes[d] for d in range(len(documents))])
    return loss, tokens, encoder_positions + len(documents) * shared + sum(e.shape[0] for _, e, _ in rows)


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
