"""The AutoCompressor: a LLaMA causal LM plus `embed_summary`, checkpoint-compatible with the
published AutoCompressor-Llama-2 checkpoints (root-level `embed_summary.weight`, config fields
`summary_length` and `accumulate_summary`).

`load_autocompressor` is the one place that reads weights, for the compressor, the decoder and
finetuning alike: any published layout (model/checkpoint.py), `.bin` only through torch's
`weights_only=True` unpickler, and every tensor checked by name and shape against config.json
before anything loads, so an incomplete checkpoint is refused instead of half random. No remote
code is ever run: the model class is always this one, and configs and tokenizers load without
`trust_remote_code`.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from huggingface_hub.errors import StrictDataclassError
from safetensors import SafetensorError
from torch import nn
from transformers import AutoConfig, AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase

from lloco_core.errors import InputError
from lloco_core.model.checkpoint import WeightFiles, find_weight_files, one_line, read_tensor_shapes, resolve_model_folder

DEFAULT_SEGMENT_LENGTH = 1536
"""LLoCO's segment length when the checkpoint names none (the published one does not)."""

# Checkpoints saved by transformers < 4.31 carry each layer's rotary `inv_freq` buffer; it is
# recomputed from the config, so it may be present and is never loaded.
IGNORED_CHECKPOINT_TENSORS = re.compile(r"(^|\.)rotary_emb\.inv_freq$")
POSITIVE_INT_FIELDS = ("summary_length", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "intermediate_size", "vocab_size", "max_position_embeddings")
LAYER_PREFIX = re.compile(r"^model\.layers\.(\d+)\.")
SHOWN_NAMES = 3


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


def _is_positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def check_model_config(values: dict[str, Any], source: str) -> None:
    """Refuse config.json values that would otherwise crash deep inside a forward pass or silently
    change the numbers (a `segment_length` of 0 once became 1536). Runs on the file's own values,
    before transformers' checks, so every message names the field as the user wrote it."""
    where = f"config.json of {source}"
    if values.get("model_type") != "llama":
        raise InputError(f"{where}: model_type is {values.get('model_type')!r}; lloco loads LLaMA-family AutoCompressors (model_type 'llama')")
    if "summary_length" not in values:
        raise InputError(f"model {source!r} is not an AutoCompressor checkpoint: its config.json has no 'summary_length'")
    for name in POSITIVE_INT_FIELDS:
        if name in values and not _is_positive_int(values[name]):
            raise InputError(f"{where}: {name} must be a positive integer, not {values[name]!r}")
    segment_length = values.get("segment_length")
    if segment_length is not None and not _is_positive_int(segment_length):
        raise InputError(f"{where}: segment_length must be a positive integer or absent, not {segment_length!r}")
    for name in ("accumulate_summary", "tie_word_embeddings"):
        if name in values and not isinstance(values[name], bool):
            raise InputError(f"{where}: {name} must be true or false, not {values[name]!r}")
    defaults = LlamaConfig()
    hidden = values.get("hidden_size", defaults.hidden_size)
    heads = values.get("num_attention_heads", defaults.num_attention_heads)
    kv_heads = values.get("num_key_value_heads") or heads
    if hidden % heads:
        raise InputError(f"{where}: hidden_size {hidden} is not divisible by num_attention_heads {heads}")
    if heads % kv_heads:
        raise InputError(f"{where}: num_attention_heads {heads} is not divisible by num_key_value_heads {kv_heads}")


def model_segment_length(config: LlamaConfig) -> int:
    """The checkpoint's own `segment_length` when it names one, else LLoCO's 1536."""
    value = getattr(config, "segment_length", None)
    return DEFAULT_SEGMENT_LENGTH if value is None else int(value)


def load_config(model: str, revision: str | None = None) -> LlamaConfig:
    """config.json of a checkpoint folder or hub id, validated."""
    path = Path(resolve_model_folder(model, revision)) / "config.json"
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise InputError(f"model {model!r} has no config.json ({path})") from err
    except (OSError, ValueError) as err:
        raise InputError(f"{path} is not readable JSON: {one_line(err)}") from err
    if not isinstance(values, dict):
        raise InputError(f"{path} is not a JSON object")
    check_model_config(values, model)
    try:
        return AutoConfig.from_pretrained(path.parent)
    except (OSError, ValueError, TypeError, KeyError, StrictDataclassError) as err:
        raise InputError(f"cannot load model config from {model!r}: {one_line(err)}") from err


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is missing
        return False


def _sentencepiece_only(folder: str) -> Path | None:
    """The `tokenizer.model` of a folder that ships no `tokenizer.json` (older LLaMA checkpoints)."""
    path = Path(folder)
    return path / "tokenizer.model" if (path / "tokenizer.model").is_file() and not (path / "tokenizer.json").is_file() else None


def load_tokenizer(model: str, revision: str | None = None) -> PreTrainedTokenizerBase:
    """The checkpoint's fast tokenizer (offsets cut segments): its `tokenizer.json`, or a LLaMA
    SentencePiece `tokenizer.model` turned into a fast tokenizer that encodes exactly as SentencePiece."""
    folder = resolve_model_folder(model, revision)
    try:
        if (spm := _sentencepiece_only(folder)) is not None:
            if not _importable("google.protobuf"):
                raise InputError(f"the tokenizer of {model!r} is a SentencePiece tokenizer.model without tokenizer.json; reading it needs the protobuf package: pip install protobuf")
            from lloco_core.model.spm_tokenizer import fast_tokenizer_from_sentencepiece

            tokenizer = fast_tokenizer_from_sentencepiece(spm)
        else:
            tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError, TypeError, KeyError, ImportError) as err:
        raise InputError(f"cannot load the tokenizer of {model!r}: {one_line(err)}") from err
    if not tokenizer.is_fast:
        raise InputError(f"the tokenizer of {model!r} is not a fast tokenizer; lloco needs offsets to cut segments")
    return tokenizer


def expected_tensor_shapes(config: LlamaConfig) -> tuple[dict[str, tuple[int, ...]], set[str]]:
    """Name -> shape of every tensor a checkpoint for `config` must hold, and the names it may
    omit (an output head tied to the input embeddings). Built on the meta device: no memory."""
    with torch.device("meta"):
        model = LlamaAutoCompressorModel(copy.deepcopy(config))
    shapes = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    return shapes, set(getattr(model, "all_tied_weights_keys", None) or {})


def _names(names: list[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:SHOWN_NAMES])
    return shown + (f" and {len(names) - SHOWN_NAMES} more" if len(names) > SHOWN_NAMES else "")


def _layer_hint(config: LlamaConfig, names: set[str]) -> str:
    layers = {int(m.group(1)) for n in names if (m := LAYER_PREFIX.match(n))}
    if len(layers) == config.num_hidden_layers:
        return ""
    return f" (config.json has num_hidden_layers={config.num_hidden_layers}, the weights hold {len(layers)} layers)"


SUMMARY_TOKENS = "embed_summary.weight"
"""The one tensor a plain LLaMA base lacks: compressor training creates it (`new_summary_tokens`)."""


def check_weights(config: LlamaConfig, weights: WeightFiles, shapes: dict[str, tuple[int, ...]], new: frozenset[str] = frozenset()) -> None:
    """Every tensor the model has must be in the checkpoint under its exact name and shape, and
    nothing else may be (transformers would random-init the first, drop the second, and even
    rename `model.embed_summary.weight` onto `embed_summary.weight`). `new` names tensors that must
    be absent because the caller creates them (a base model's summary tokens)."""
    expected, optional = expected_tensor_shapes(config)
    present_new = sorted(new & set(shapes))
    if present_new:
        raise InputError(f"checkpoint {weights.folder} already holds {_names(present_new)}: it is an AutoCompressor, not a plain base model")
    missing = sorted(set(expected) - set(shapes) - optional - new)
    unexpected = sorted(n for n in set(shapes) - set(expected) if not IGNORED_CHECKPOINT_TENSORS.search(n))
    misshapen = sorted(n for n in set(expected) & set(shapes) if expected[n] != shapes[n])
    problems = []
    if missing:
        renamed = [f"{u!r} holds {m!r} under another name" for m in missing for u in unexpected if u.endswith("." + m) or m.endswith("." + u)]
        problems.append(f"missing tensor {_names(missing)}" + (f" ({renamed[0]}; names must match exactly)" if renamed else _layer_hint(config, set(shapes))))
    if unexpected:
        problems.append(f"unexpected tensor {_names(unexpected)}")
    if misshapen:
        first = misshapen[0]
        problems.append(f"misshapen tensor {_names(misshapen)} ({first!r} is {list(shapes[first])} in the checkpoint, config.json implies {list(expected[first])})")
    if problems:
        raise InputError(f"checkpoint {weights.folder} ({weights.layout}) does not match its config.json: " + "; ".join(problems))


def check_checkpoint(folder: str, config: LlamaConfig, new: frozenset[str] = frozenset()) -> WeightFiles:
    """The weight files of a checkpoint folder, refused unless they hold exactly the tensors its
    config.json implies (less `new`). Reads headers only: cheap enough to run before planning any work."""
    weights = find_weight_files(folder)
    check_weights(config, weights, read_tensor_shapes(weights), new)
    return weights


def load_autocompressor(
    model: str, *, dtype: torch.dtype, attn_implementation: str = "sdpa", revision: str | None = None, base_config: LlamaConfig | None = None
) -> LlamaAutoCompressorModel:
    """Load an AutoCompressor checkpoint (local folder or hub id, any published layout) on the CPU:
    the config validated, every tensor checked before loading, `.bin` through `weights_only=True`.

    With `base_config` (a plain LLaMA's config plus the AutoCompressor fields, see
    `compressor.plan_compressor`) the checkpoint is a base model for compressor training: every
    LLaMA tensor must be there and `embed_summary.weight` must not; it is created, uninitialised."""
    folder = resolve_model_folder(model, revision)
    config = base_config if base_config is not None else load_config(folder)
    new = frozenset({SUMMARY_TOKENS}) if base_config is not None else frozenset()
    weights = check_checkpoint(folder, config, new)
    try:
        network, info = LlamaAutoCompressorModel.from_pretrained(
            folder,
            config=config,
            dtype=dtype,
            attn_implementation=attn_implementation,
            use_safetensors=weights.format == "safetensors",
            weights_only=True,
            output_loading_info=True,
        )
    except (OSError, ValueError, SafetensorError) as err:
        raise InputError(f"cannot load model weights from {model!r}: {one_line(err)}") from err
    leftover = sorted({*info["missing_keys"], *info["unexpected_keys"], *(k for k, *_ in info["mismatched_keys"])} - new)
    if leftover:  # checked above; kept so a transformers change can never load a half-random model
        raise InputError(f"checkpoint {folder} did not load cleanly: {_names(leftover)}")
    return network


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
        return model_segment_length(self.model.config)


def load_compressor(model: str, device: str = "auto", revision: str | None = None) -> LoadedCompressor:
    """Load an AutoCompressor-format checkpoint (local folder or hub id) for inference."""
    folder = resolve_model_folder(model, revision)
    torch_device = resolve_device(device)
    dtype = compute_dtype(torch_device)
    attn = "flash_attention_2" if torch_device.type == "cuda" and flash_attention_available() else "sdpa"
    tokenizer = load_tokenizer(folder)
    network = load_autocompressor(folder, dtype=dtype, attn_implementation=attn)
    if len(tokenizer) > network.config.vocab_size:
        raise InputError(f"the tokenizer of {model!r} has {len(tokenizer)} tokens but config.json has vocab_size {network.config.vocab_size}: token ids past it have no embedding")
    network.to(torch_device).eval()
    return LoadedCompressor(network, tokenizer, torch_device, dtype, model, revision)
