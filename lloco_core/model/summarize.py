"""AutoCompressor summary vectors, many documents per forward pass.

For segment i of a document the encoder input is [softprompt_i ; embed(segment_i) ; embed_summary],
positions 0..L-1 from the start of that input, causal attention; the final hidden states (after the
last norm) at the summary positions are segment i's summaries. With accumulation,
softprompt_{i+1} = [softprompt_i ; summaries_i].

Batching: at step i every active document has a softprompt of the same length, so rows differ only
in the token count of a short last segment. Shorter rows are padded *after* their summary tokens:
under causal attention no real position can see the padding, so no attention mask is needed and
each row equals its unbatched result.
"""

from __future__ import annotations

import torch

from lloco_core.model.autocompressor import LlamaAutoCompressorModel


@torch.inference_mode()
def summarize_documents(model: LlamaAutoCompressorModel, documents: list[list[list[int]]], accumulate: bool | None = None) -> list[torch.Tensor]:
    """Summaries for each document: a list (per document) of tensors [n_segments, S, H].

    `documents[d][i]` are the token ids of segment i of document d. All documents are encoded
    together; documents with fewer segments drop out of later steps.
    """
    if accumulate is None:
        accumulate = bool(getattr(model.config, "accumulate_summary", True))
    device = model.embed_summary.weight.device
    summary_embeds = model.embed_summary.weight  # [S, H]
    S, H = summary_embeds.shape
    embed_tokens = model.get_input_embeddings()
    outputs: list[list[torch.Tensor]] = [[] for _ in documents]
    softprompts: dict[int, torch.Tensor] = {d: summary_embeds.new_zeros(0, H) for d in range(len(documents))}
    for step in range(max((len(segments) for segments in documents), default=0)):
        active = [d for d, segments in enumerate(documents) if len(segments) > step]
        lengths = [len(documents[d][step]) for d in active]
        width = max(lengths)
        prompt_len = softprompts[active[0]].shape[0]
        ids = torch.zeros(len(active), width, dtype=torch.long, device=device)
        for row, d in enumerate(active):
            ids[row, : lengths[row]] = torch.tensor(documents[d][step], dtype=torch.long)
        token_embeds = embed_tokens(ids)
        rows = []
        for row, d in enumerate(active):
            n = lengths[row]
            rows.append(torch.cat([softprompts[d], token_embeds[row, :n], summary_embeds, token_embeds[row, n:]]))
        hidden = model.model(inputs_embeds=torch.stack(rows), use_cache=False).last_hidden_state
        for row, d in enumerate(active):
            start = prompt_len + lengths[row]
            summary = hidden[row, start : start + S]
            outputs[d].append(summary)
            softprompts[d] = torch.cat([softprompts[d], summary]) if accumulate else summary
    return [torch.stack(segs) if segs else summary_embeds.new_zeros(0, S, H) for segs in outputs]
