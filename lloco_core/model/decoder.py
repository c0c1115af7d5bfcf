"""The LLoCO decoder: the base LLaMA weights (plus an optional per-corpus LoRA adapter) reading

    [ summary vectors of the document's segments, in order ; embed(prompt tokens) ]

exactly as the official LLoCO finetune/inference code builds it: no BOS (unless an older prompt
set asks for one), prompt and answer tokenized separately with `add_special_tokens=False`, the
answer followed by EOS, positions counted from 0 at the first summary vector, and up to 80 segments
of a named document (the official preprocessing keeps the first 122,880 tokens, 80 segments of
1,536). Training (`training/examples.py`) and inference (`qa/answer.py`) both build their inputs
with `encode_request`, `document_segments` and `build_decoder_inputs`, so the two never disagree.
LLoCO uses no projector: summary vectors go straight into the decoder's embedding space, which is
why their hidden size must equal the decoder's.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from lloco_core.errors import InputError, StoreError
from lloco_core.model.autocompressor import compute_dtype, flash_attention_available, load_autocompressor, resolve_device
from lloco_core.qa.prompts import PromptSet
from lloco_core.store.storage import filesystem

IGNORE_INDEX = -100
"""Label value the loss skips (torch's CrossEntropyLoss default)."""

MAX_DOCUMENT_SEGMENTS = 80
"""Segments of one document the official LLoCO decoder reads: 4,000 summary vectors at 50 per segment."""

DECODER_DTYPES: dict[str, torch.dtype] = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


class PromptRequest(Protocol):
    """What a prompt is rendered from: a QA line (`QAItem`) or a question (`Question`)."""

    question: str
    task: str
    options: list[str] | None


def encode_request(
    tokenizer: PreTrainedTokenizerBase, prompts: PromptSet, request: PromptRequest, answer: str | None = None, max_answer_tokens: int | None = None
) -> tuple[list[int], list[int]]:
    """(prompt ids, answer ids) as the decoder reads them after the summary vectors.

    The prompt is the request rendered with its task's template and tokenized alone without
    special tokens (BOS first only when the prompt set says so); the answer, when given (training),
    is the template's target text tokenized alone, cut to `max_answer_tokens`, then EOS.
    KeyError when the set has no template for the task.
    """
    template = prompts.for_task(request.task)
    prompt = tokenizer(template.render(request.question, request.options), add_special_tokens=False)["input_ids"]
    if prompts.bos:
        prompt = [tokenizer.bos_token_id, *prompt]
    if answer is None:
        return prompt, []
    target = tokenizer(template.answer_text(answer, request.options), add_special_tokens=False)["input_ids"]
    return prompt, [*target[:max_answer_tokens], tokenizer.eos_token_id]


def document_segments(n_segments: int, max_segments: int = MAX_DOCUMENT_SEGMENTS) -> list[int]:
    """Positions (in document order) of the segments a question about one document reads: the
    first `max_segments`, as the official code truncates a document to its first 80 segments."""
    return list(range(min(n_segments, max_segments)))


def check_hidden_size(model: PreTrainedModel, hidden_size: int, where: str = "the stored embeddings") -> None:
    """Summary vectors enter the decoder unprojected: a size mismatch is a user error, said plainly."""
    model_hidden = int(model.config.hidden_size)
    if model_hidden != int(hidden_size):
        raise InputError(
            f"hidden size mismatch: the decoder model has hidden_size {model_hidden}, but {where} have {hidden_size}; "
            "use the same base model that compressed the corpus (LLoCO has no projector)"
        )


def build_decoder_inputs(model: PreTrainedModel, summaries: torch.Tensor | None, prompt_ids: Sequence[int]) -> torch.Tensor:
    """One example's decoder input embeddings `[summaries ; embed(prompt_ids)]`, shape [n_seg*S + len(prompt_ids), H].

    `summaries` is [n_seg, S, H] (the selected segments, already in document order; None or n_seg=0
    for no context); `prompt_ids` come from `encode_request` (plus the answer ids when training).
    Summaries are cast to the embedding dtype and device, as the official code casts them to the
    decoder's float16.
    """
    embed = model.get_input_embeddings()
    weight = embed.weight
    ids = torch.as_tensor(list(prompt_ids), dtype=torch.long, device=weight.device)
    prompt = embed(ids)
    if summaries is None or summaries.numel() == 0:
        return prompt
    if summaries.dim() != 3:
        raise ValueError(f"summaries must be [n_seg, S, H], got shape {tuple(summaries.shape)}")
    check_hidden_size(model, summaries.shape[-1])
    soft = summaries.to(device=weight.device, dtype=weight.dtype).reshape(-1, summaries.shape[-1])
    return torch.cat([soft, prompt], dim=0)


@dataclass
class DecoderBatch:
    """Padded inputs for several examples; `labels` only when labels were given."""

    inputs_embeds: torch.Tensor  # [B, L, H]
    attention_mask: torch.Tensor  # [B, L], 1 = real position
    position_ids: torch.Tensor  # [B, L], 0.. counted over real positions only (padding-side safe)
    labels: torch.Tensor | None = None  # [B, L], IGNORE_INDEX where no loss


def pad_batch(
    embeds: Sequence[torch.Tensor], labels: Sequence[torch.Tensor] | None = None, padding_side: str = "right"
) -> DecoderBatch:
    """Stack variable-length [L_i, H] inputs into one batch with an attention mask.

    Use `padding_side="right"` for training and `"left"` for generation (new tokens then follow
    every example's last real position). Padding positions get zero embeddings, mask 0 and label
    IGNORE_INDEX; position ids count real positions only, so left padding does not shift them.
    """
    if not embeds:
        raise ValueError("pad_batch needs at least one example")
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', not {padding_side!r}")
    longest = max(e.shape[0] for e in embeds)
    hidden = embeds[0].shape[-1]
    like = embeds[0]
    mask = torch.zeros((len(embeds), longest), dtype=torch.long, device=like.device)
    lab = torch.full((len(embeds), longest), IGNORE_INDEX, dtype=torch.long, device=like.device) if labels is not None else None
    rows = []
    for i, e in enumerate(embeds):
        n = e.shape[0]
        span = slice(longest - n, longest) if padding_side == "left" else slice(0, n)
        pad = e.new_zeros((longest - n, hidden))
        rows.append(torch.cat([pad, e] if padding_side == "left" else [e, pad]))  # no in-place writes: cheap backward
        mask[i, span] = 1
        if lab is not None:
            lab[i, span] = labels[i].to(like.device)
    out = torch.stack(rows)
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    return DecoderBatch(out, mask, positions, lab)


def decoder_window(model_or_config: PreTrainedModel | object, override: int | None = None) -> int:
    """The decoder's context length: an explicit override, else the config's max_position_embeddings."""
    if override:
        return int(override)
    config = getattr(model_or_config, "config", model_or_config)
    return int(config.max_position_embeddings)


ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def _local_adapter(adapter: str, endpoint_url: str | None = None, files: Mapping[str, Any] | None = None) -> tuple[str, tempfile.TemporaryDirectory | None]:
    """A local folder for an adapter given as a folder or any URL (s3://…, file://…), its files
    fetched through the store's filesystem (its S3 endpoint) and checked against `files`
    (name -> FileSum from the adapter's commit record) before PEFT reads them."""
    fs, remote = filesystem(adapter.removeprefix("file://") if adapter.startswith("file://") else adapter, endpoint_url)
    remote = remote.rstrip("/")
    if not fs.exists(f"{remote}/adapter_config.json"):
        raise InputError(f"adapter {adapter!r} has no adapter_config.json: not a PEFT adapter folder")
    local_fs = "://" not in adapter or adapter.startswith("file://")
    tmp = None if local_fs else tempfile.TemporaryDirectory(prefix="lloco-adapter-")
    folder = remote if tmp is None else tmp.name
    for name in ADAPTER_FILES:
        data = fs.cat_file(f"{remote}/{name}")
        expected = (files or {}).get(name)
        if expected is not None and (len(data), hashlib.sha256(data).hexdigest()) != (expected.size, expected.sha256):
            if tmp is not None:
                tmp.cleanup()
            raise StoreError(f"{adapter.rstrip('/')}/{name}: bytes do not match the checksum in the adapter's commit record (corrupt; run `lloco verify --repair`)")
        if tmp is not None:
            with open(os.path.join(folder, name), "wb") as f:
                f.write(data)
    return folder, tmp


def load_decoder(
    model_path: str,
    adapter_path_or_uri: str | None = None,
    device: str = "auto",
    dtype: str = "auto",
    endpoint_url: str | None = None,
    adapter_files: Mapping[str, Any] | None = None,
) -> PreTrainedModel:
    """The decoder for training or inference: the AutoCompressor checkpoint's LLaMA weights, with
    the PEFT LoRA adapter applied when one is given (a folder or an fsspec URL such as
    `s3://bucket/root/corpus/adapters/<key>`, fetched through the store's `endpoint_url`; its
    files are checked against `adapter_files`, the checksums of its commit record). Returns a
    `LlamaAutoCompressorModel` or a `peft.PeftModel` wrapping it, in eval mode, in `dtype`
    (float16, bfloat16 or float32; auto: float32 on CPU and bf16 on CUDA; the official inference
    ran float16).

    Summary vectors from `embed_summary` are not used by the decoder; loading the same class keeps
    one loading path for compressor and decoder.
    """
    torch_device = resolve_device(device)
    dtype = DECODER_DTYPES[dtype] if dtype != "auto" else compute_dtype(torch_device)
    attn = "flash_attention_2" if torch_device.type == "cuda" and flash_attention_available() else "sdpa"
    model = load_autocompressor(model_path, dtype=dtype, attn_implementation=attn)
    if adapter_path_or_uri:
        from peft import PeftModel

        local, tmp = _local_adapter(adapter_path_or_uri, endpoint_url, adapter_files)
        try:
            model = PeftModel.from_pretrained(model, local, is_trainable=False)
        finally:
            if tmp is not None:
                tmp.cleanup()
    return model.to(torch_device).eval()
