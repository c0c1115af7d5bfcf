"""Which files of a checkpoint folder hold its weights, and what tensors they hold.

Published LLaMA checkpoints come in four layouts: `model.safetensors`, sharded safetensors with
`model.safetensors.index.json`, `pytorch_model.bin`, and sharded `pytorch_model-0000k-of-0000n.bin`
with `pytorch_model.bin.index.json` (princeton-nlp/AutoCompressor-Llama-2-7b-6k ships only the
last). The order below is transformers' own preference, so the files found here are exactly the
files `from_pretrained` reads and the encoder key hashes. Nothing here imports torch at module
level: the fingerprint code and hub resolution use it without loading a model.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lloco_core.errors import InputError

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
BIN = "pytorch_model.bin"
BIN_INDEX = "pytorch_model.bin.index.json"
LAYOUTS: tuple[tuple[str, Literal["safetensors", "bin"], bool], ...] = (
    (SAFETENSORS, "safetensors", False),
    (SAFETENSORS_INDEX, "safetensors", True),
    (BIN, "bin", False),
    (BIN_INDEX, "bin", True),
)
WEIGHT_INDEXES = frozenset({SAFETENSORS_INDEX, BIN_INDEX})
# what a hub download needs besides the weights: config, tokenizer (fast or SentencePiece)
METADATA_PATTERNS = ("*.json", "*.model", "*.txt")
# the weight files of each layout, as hub download patterns
LAYOUT_PATTERNS = {
    SAFETENSORS: [SAFETENSORS],
    SAFETENSORS_INDEX: [SAFETENSORS_INDEX, "model-*.safetensors"],
    BIN: [BIN],
    BIN_INDEX: [BIN_INDEX, "pytorch_model-*.bin"],
}


def one_line(err: BaseException | str) -> str:
    """Library messages span lines (hints, tables); a user error is one line."""
    return " ".join(str(err).split())


@dataclass(frozen=True)
class WeightFiles:
    """The weight files `from_pretrained` will read from `folder`, in load order."""

    folder: Path
    format: Literal["safetensors", "bin"]
    shards: tuple[Path, ...]
    index: Path | None = None
    index_names: frozenset[str] = frozenset()

    @property
    def files(self) -> tuple[Path, ...]:
        """Every file the weights depend on (the index too): what the encoder key hashes."""
        return ((self.index,) if self.index else ()) + self.shards

    @property
    def layout(self) -> str:
        return (self.index or self.shards[0]).name


def _read_index(index: Path) -> tuple[tuple[Path, ...], frozenset[str]]:
    """The shard files a `*.index.json` names (each a plain file beside it) and the tensor names."""
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        if not isinstance(weight_map, dict) or not weight_map:
            raise ValueError("'weight_map' is empty or not an object")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise InputError(f"checkpoint index {index} is unreadable: {one_line(err)}") from err
    shards: list[Path] = []
    for name in dict.fromkeys(weight_map.values()):  # first-seen order, no repeats
        if not isinstance(name, str) or os.path.basename(name) != name or name in ("", ".", ".."):
            raise InputError(f"checkpoint index {index} names the shard {name!r}, which is not a file name beside it")
        path = index.parent / name
        if not path.is_file():
            raise InputError(f"checkpoint index {index} names the shard {name}, which is missing from {index.parent}")
        shards.append(path)
    return tuple(shards), frozenset(weight_map)


def find_weight_files(folder: str | Path) -> WeightFiles:
    """The checkpoint's weight files, preferring safetensors as transformers does; a clear error
    when none are there or an index names a shard that is not."""
    folder = Path(folder)
    for name, fmt, sharded in LAYOUTS:
        path = folder / name
        if not path.is_file():
            continue
        if not sharded:
            return WeightFiles(folder, fmt, (path,))
        shards, names = _read_index(path)
        return WeightFiles(folder, fmt, shards, path, names)
    raise InputError(f"checkpoint {folder} has no weights: expected one of {', '.join(n for n, _, _ in LAYOUTS)}")


def download_patterns(repo_files: list[str]) -> list[str]:
    """Hub download patterns: config and tokenizer files plus the weights of the one layout
    transformers would load (never both formats of a repository that ships both)."""
    present = set(repo_files)
    for name, _, _ in LAYOUTS:
        if name in present:
            return [*METADATA_PATTERNS, *LAYOUT_PATTERNS[name]]
    return list(METADATA_PATTERNS)  # no weights: the folder check names what is missing


def check_model_source(model: str) -> None:
    """Fail early with a clear message when a local path is meant but missing."""
    if os.path.isdir(os.path.expanduser(model)):
        return
    if model.startswith((".", "/", "~")) or model.count("/") > 1:
        raise InputError(f"model path {model!r} does not exist or is not a folder")
    if "/" not in model:  # a hub id is exactly "org/name"; `gpt2` is more likely a folder that is not here
        raise InputError(f"model {model!r} is not a local folder (a hub id has the form org/name, e.g. princeton-nlp/AutoCompressor-Llama-2-7b-6k)")


def _hub_file_names(model: str, revision: str | None) -> list[str] | None:
    """The repository's file names, or None when the hub cannot be asked (offline, unreachable):
    the snapshot download then says whether the local cache has the model."""
    from huggingface_hub import HfApi, constants

    if constants.HF_HUB_OFFLINE:
        return None
    try:
        return HfApi().list_repo_files(model, revision=revision)
    except Exception:  # noqa: BLE001 - httpx and hub errors share no base; snapshot_download reports the cause
        return None


def resolve_model_folder(model: str, revision: str | None = None) -> str:
    """A local folder for the checkpoint. A hub id resolves to its snapshot in the local hub cache,
    downloading (when online) the config, tokenizer and the weight files of one layout."""
    if os.path.isdir(os.path.expanduser(model)):
        return os.path.expanduser(model)
    check_model_source(model)
    from huggingface_hub import snapshot_download

    try:
        names = _hub_file_names(model, revision)
        patterns = download_patterns(names) if names is not None else list(METADATA_PATTERNS)
        folder = snapshot_download(model, revision=revision, allow_patterns=patterns)
    except Exception as err:
        raise InputError(f"cannot find model {model!r} (revision {revision or 'main'}) on the hub or in the local hub cache: {one_line(err)}") from err
    find_weight_files(folder)  # offline, the cache holds what an earlier download fetched
    return folder


def read_tensor_shapes(weights: WeightFiles) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor in the weight files, read from headers only (safetensors) or
    through torch's `weights_only=True` unpickler onto the meta device (.bin: no data is read,
    and a pickle that holds anything but tensors is refused before it can run)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for path in weights.shards:
        for name, shape in _file_tensor_shapes(path, weights.format).items():
            if name in shapes:
                raise InputError(f"checkpoint {weights.folder}: tensor {name!r} is stored twice (again in {path.name})")
            shapes[name] = shape
    if weights.index is not None and set(shapes) != weights.index_names:
        listed_only = sorted(weights.index_names - set(shapes))
        unlisted = sorted(set(shapes) - weights.index_names)
        detail = f"lists {listed_only[0]!r}, which no shard holds" if listed_only else f"does not list {unlisted[0]!r}, which a shard holds"
        raise InputError(f"checkpoint index {weights.index} does not match its shards: it {detail}")
    return shapes


def _file_tensor_shapes(path: Path, fmt: str) -> dict[str, tuple[int, ...]]:
    if fmt == "safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                return {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
        except Exception as err:
            raise InputError(f"checkpoint file {path} is not a valid safetensors file (truncated or corrupt?): {one_line(err)}") from err
    import pickle

    import torch

    try:
        state = torch.load(str(path), map_location="meta", weights_only=True)
    except pickle.UnpicklingError as err:
        raise InputError(f"checkpoint file {path} holds objects other than tensors; lloco refuses to unpickle it (weights_only): {one_line(err).split(' Check the documentation')[0]}") from err
    except (RuntimeError, OSError, EOFError, ValueError) as err:
        raise InputError(f"checkpoint file {path} is not a readable PyTorch file (truncated or corrupt?): {one_line(err)}") from err
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise InputError(f"checkpoint file {path} is not a state dict of named tensors")
    return {name: tuple(tensor.shape) for name, tensor in state.items()}
