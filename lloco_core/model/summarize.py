"""AutoCompressor summary vectors, many documents per forward pass.

For segment i of a document the encoder input is [softprompt_i ; embed(segment_i) ; embed_summary],
positions 0..L-1 from the start of that input, causal attention; the final hidden states (after the
last norm) at the summary positions are segment i's summaries. With accumulation,
softprompt_{i+1} = [softprompt_i ; summaries_i].

One code path serves inference and training: `encode_segments` is the recurrence with autograd
(compressor training backpropagates through it, optionally cutting the gradient every k segments
as the AutoCompressor objective does); `summarize_documents` is the same call under
`torch.inference_mode` for compress.

Batching: at step i every active document has a softprompt of the same length, so rows differ only
in the token count of a short last segment. Shorter rows are padded *after* their summary tokens:
under causal attention no real position can see the padding, so no attention mask is needed and
each row equals its unbatched result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from lloco_core.model.autocompressor import LlamaAutoCompressorModel


def summary_token_embeds(model: LlamaAutoCompressorModel) -> torch.Tensor:
    """The learned summary-token embeddings [S, H], read through the module (so wrappers such as
    PEFT's trainable copy, and hooks such as DeepSpeed's, see the access)."""
    ids = torch.arange(int(model.config.summary_length), device=model.get_input_embeddings().weight.device)
    return model.embed_summary(ids)


@dataclass
class SegmentStep:
    """One encoder pass over one segment of several documents."""

    token_hidden: torch.Tensor  # [B, W, H] hidden states from the first token position on; row b is valid for len(segment b)
    summaries: torch.Tensor  # [B, S, H] final hidden states at the summary positions


def encode_segment(
    model: LlamaAutoCompressorModel, softprompt: torch.Tensor, segments: Sequence[Sequence[int]] | torch.Tensor, summary_embeds: torch.Tensor | None = None
) -> SegmentStep:
    """Run `[softprompt ; embed(segment) ; embed_summary]` for each row; rows may differ in length only
    through `segments` (padding goes after the summary tokens, invisible to real positions).

    `segments` are token-id lists, or a [B, n] tensor of equal-length rows; `softprompt` is [B, P, H]
    (P may be 0). Row b's token hidden states are valid up to len(segments[b]).
    """
    if summary_embeds is None:
        summary_embeds = summary_token_embeds(model)
    S = summary_embeds.shape[0]
    device = summary_embeds.device
    if isinstance(segments, torch.Tensor):  # equal-length rows [B, n]
        ids = segments.to(device)
        lengths = [ids.shape[1]] * ids.shape[0]
    else:
        lengths = [len(s) for s in segments]
        ids = torch.zeros(len(segments), max(lengths), dtype=torch.long, device=device)
        for row, seg in enumerate(segments):
            ids[row, : lengths[row]] = torch.as_tensor(list(seg), dtype=torch.long, device=device)
    width = ids.shape[1]
    token_embeds = model.get_input_embeddings()(ids)
    rows = []
    for row, n in enumerate(lengths):
        rows.append(torch.cat([softprompt[row], token_embeds[row, :n], summary_embeds, token_embeds[row, n:]]))
    hidden = model.model(inputs_embeds=torch.stack(rows), use_cache=False).last_hidden_state
    P = softprompt.shape[1]
    summaries = torch.stack([hidden[row, P + n : P + n + S] for row, n in enumerate(lengths)])
    return SegmentStep(hidden[:, P : P + width], summaries)


def encode_segments(
    model: LlamaAutoCompressorModel, documents: Sequence[Sequence[Sequence[int]]], accumulate: bool | None = None, gradient_segments: int | None = None,
    on_step: Callable[[int], None] | None = None,
) -> list[torch.Tensor]:
    """Summaries for each document: a list (per document) of tensors [n_segments, S, H], with autograd.

    `documents[d][i]` are the token ids of segment i of document d. All documents are encoded
    together; documents with fewer segments drop out of later steps. With `gradient_segments = k`
    the softprompt entering segments k, 2k, ... is detached: gradients reach the summaries of at
    most k consecutive segments through the recurrence (each summary still gets its own gradient).
    `on_step(tokens)` is called after each step with the segment tokens it encoded (progress within
    a batch of long documents, which can take minutes on CPU).
    """
    if accumulate is None:
        accumulate = bool(getattr(model.config, "accumulate_summary", True))
    summary_embeds = summary_token_embeds(model)
    S, H = summary_embeds.shape
    outputs: list[list[torch.Tensor]] = [[] for _ in documents]
    softprompts: dict[int, torch.Tensor] = {d: summary_embeds.new_zeros(0, H) for d in range(len(documents))}
    for step in range(max((len(segments) for segments in documents), default=0)):
        active = [d for d, segments in enumerate(documents) if len(segments) > step]
        if gradient_segments and step and step % gradient_segments == 0:
            softprompts = {d: p.detach() for d, p in softprompts.items()}
        prompt = torch.stack([softprompts[d] for d in active])
        result = encode_segment(model, prompt, [documents[d][step] for d in active], summary_embeds)
        for row, d in enumerate(active):
            summary = result.summaries[row]
            outputs[d].append(summary)
            softprompts[d] = torch.cat([softprompts[d], summary]) if accumulate else summary
        if on_step is not None:
            on_step(sum(len(documents[d][step]) for d in active))
    return [torch.stack(segs) if segs else summary_embeds.new_zeros(0, S, H) for segs in outputs]


@torch.inference_mode()
def summarize_documents(
    model: LlamaAutoCompressorModel, documents: list[list[list[int]]], accumulate: bool | None = None, on_step: Callable[[int], None] | None = None
) -> list[torch.Tensor]:
    """`encode_segments` for inference (compress): no autograd, same numbers."""
    return encode_segments(model, documents, accumulate, on_step=on_step)
