"""The AutoCompressor: a LLaMA causal LM plus `embed_summary`, checkpoint-compatible with the
published AutoCompressor-Llama-2 checkpoints (root-level `embed_summary.weight`, config fields
`summary_length` and `accumulate_summary`).

One place builds or loads it; loading goes through `from_pretrained` (safetensors, no remote code
unless the user asks), so tests, the demo and production run the same code.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import threading
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import AutoConfig, AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase

from lloco_core.errors import InputError

DEFAULT_SEGMENT_LENGTH = 1536


class LlamaAutoCompressorModel(LlamaForCausalLM):
    """LLaMA with learned summary-token embeddings. The decoder is the same weights (no projector)."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__(config)
        self.embed_summary = nn.Embedding(config.summary_length, config.hidden_size)
        self.post_init()


@functools.lru_cache(maxsize=1)
def flash_attention_available() -> bool:
    return importlib.util.find_spec("flash_attn") is not None and torch.cuda.is_available()


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for, but CUDA is not available on this machine")
    return torch.device(device)


def compute_dtype(device: torch.device) -> torch.dtype:
    """float32 on CPU (bf16 matmuls are slow there), bf16 on GPU as in the paper."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def check_model_source(model: str) -> None:
    """Fail early with a clear message when a local path is meant but missing."""
    if os.path.isdir(os.path.expanduser(model)):
        return
    if model.startswith((".", "/", "~")) or model.count("/") != 1:  # a hub id is exactly "org/name"
        raise InputError(f"model path {model!r} does not exist or is not a folder")


def load_config(model: str, revision: str | None = None, trust_remote_code: bool = False) -> LlamaConfig:
    check_model_source(model)
    try:
        config = AutoConfig.from_pretrained(model, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise InputError(f"cannot load model config from {model!r}: {err}") from err
    if not hasattr(config, "summary_length"):
        raise InputError(f"model {model!r} is not an AutoCompressor checkpoint: its config.json has no 'summary_length'")
    return config


def load_tokenizer(model: str, revision: str | None = None, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    try:
        tokenizer = AutoTokenizer.from_pretrained(model, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise InputError(f"cannot load the tokenizer of {model!r}: {err}") from err
    if not tokenizer.is_fast:
        raise InputError(f"the tokenizer of {model!r} is not a fast tokenizer; lloco needs offsets to cut segments")
    return tokenizer


@dataclass
class LoadedCompressor:
    model: LlamaAutoCompressorModel
    tokenizer: PreTrainedTokenizerBase
    device: torch.device
    dtype: torch.dtype
    source: str
    revision: str | None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def summary_length(self) -> int:
        return int(self.model.config.summary_length)

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def accumulate_summary(self) -> bool:
        return bool(getattr(self.model.config, "accumulate_summary", True))

    def default_segment_length(self) -> int:
        return int(getattr(self.model.config, "segment_length", None) or DEFAULT_SEGMENT_LENGTH)


def load_compressor(model: str, device: str = "auto", revision: str | None = None, trust_remote_code: bool = False) -> LoadedCompressor:
    """Load an AutoCompressor-format checkpoint (local folder or hub id) for inference."""
    config = load_config(model, revision, trust_remote_code)
    torch_device = resolve_device(device)
    dtype = compute_dtype(torch_device)
    attn = "flash_attention_2" if torch_device.type == "cuda" and flash_attention_available() else "sdpa"
    try:
        network = LlamaAutoCompressorModel.from_pretrained(
            model, config=config, revision=revision, dtype=dtype, attn_implementation=attn, use_safetensors=True
        )
    except (OSError, ValueError) as err:
        raise InputError(f"cannot load model weights from {model!r}: {err}") from err
    network.to(torch_device).eval()
    return LoadedCompressor(network, load_tokenizer(model, revision, trust_remote_code), torch_device, dtype, model, revision)
