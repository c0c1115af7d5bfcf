"""Training state without pickle: a nested tree of tensors and plain values in one safetensors file.

DeepSpeed checkpoints (module weights, ZeRO optimizer partitions, scheduler, RNG, client state) are
trees of dicts, lists and tuples holding tensors, numbers, strings and a few small DeepSpeed objects.
`torch.save` pickles them, and loading a pickle runs whatever code the file names. Here the tensors
go into a safetensors file and the rest of the tree into a JSON skeleton in that file's metadata:

    {"dict": [[key, value], ...]}   {"list": [...]}   {"tuple": [...]}   {"set": [...]}
    {"tensor": i}   {"size": [...]}   {"dtype": "bfloat16"}   {"float": "nan" | "inf" | "-inf"}
    {"enum": [class, value]}   {"object": [class, {"dict": ...}]}   null, true, 1, 2.5, "text" as themselves

Loading builds only those node kinds; the only classes it can instantiate are the few named in
`ALLOWED_CLASSES`, each from plain attribute values. A file that is not this format (a pickle, a
zip written by `torch.save`, a truncated file) is refused by its first bytes, before anything is parsed.
"""

from __future__ import annotations

import enum
import importlib
import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from lloco_core.errors import StoreError

FORMAT = "lloco-tensor-tree/1"
TREE_KEY = "lloco.tree"
FORMAT_KEY = "lloco.format"
MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit
MAX_DEPTH = 64

# DeepSpeed objects found in ZeRO 0-3 checkpoints (fp32 and bf16); anything else fails at save time.
ALLOWED_CLASSES = frozenset(
    {
        "deepspeed.runtime.fp16.loss_scaler.LossScaler",
        "deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler",
        "deepspeed.utils.tensor_fragment.fragment_address",
    }
)
ALLOWED_ENUMS = frozenset({"deepspeed.runtime.zero.config.ZeroStageEnum"})
NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _allowed_class(name: Any, allowed: frozenset[str], where: str) -> type:
    """Import one of the allow-listed classes by name; any other name is refused unimported."""
    if not isinstance(name, str) or name not in allowed:
        raise StoreError(f"{where}: the training state names class {name!r}, which is not allowed")
    module, _, attr = name.rpartition(".")
    return getattr(importlib.import_module(module), attr)


# encoding ----------------------------------------------------------------------------------------
class _Encoder:
    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}
        self.ids: dict[int, int] = {}  # a tensor referenced twice is stored once
        self.storages: set[int] = set()

    def node(self, value: Any, path: str) -> Any:
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, enum.Enum):
            name = _qualname(type(value))
            if name not in ALLOWED_ENUMS:
                raise TypeError(f"cannot store enum {name} at {path}: add it to ALLOWED_ENUMS if it is plain data")
            return {"enum": [name, self.node(value.value, path)]}
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            if math.isfinite(value):
                return float(value)
            return {"float": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
        if isinstance(value, torch.Tensor):
            return {"tensor": self.tensor(value)}
        if isinstance(value, torch.Size):
            return {"size": [int(n) for n in value]}
        if isinstance(value, torch.dtype):
            return {"dtype": str(value).removeprefix("torch.")}
        if isinstance(value, dict):
            return {"dict": [[self.node(k, f"{path} key"), self.node(v, f"{path}[{k!r}]")] for k, v in value.items()]}
        if isinstance(value, tuple):
            return {"tuple": [self.node(v, f"{path}[{i}]") for i, v in enumerate(value)]}
        if isinstance(value, list):
            return {"list": [self.node(v, f"{path}[{i}]") for i, v in enumerate(value)]}
        if isinstance(value, (set, frozenset)):
            return {"set": [self.node(v, f"{path} item") for v in value]}
        name = _qualname(type(value))
        if name in ALLOWED_CLASSES:
            return {"object": [name, self.node(dict(vars(value)), f"{path}.__dict__")]}
        raise TypeError(f"cannot store a {name} at {path} in a training checkpoint: only tensors, plain values and {sorted(ALLOWED_CLASSES)}")

    def tensor(self, original: torch.Tensor) -> int:
        if id(original) in self.ids:
            return self.ids[id(original)]
        value = original.detach()
        storage = value.untyped_storage()
        whole = value.device.type == "cpu" and value.is_contiguous() and value.storage_offset() == 0 and storage.nbytes() == value.numel() * value.element_size()
        # safetensors refuses tensors that share storage: a view, a second view of one storage, or a
        # GPU tensor is saved as its own CPU copy; a tensor that is all of its storage is saved as is.
        if whole and storage.data_ptr() not in self.storages:
            self.storages.add(storage.data_ptr())
        else:
            value = value.to("cpu", copy=True).contiguous()
        index = len(self.tensors)
        self.tensors[str(index)] = value
        self.ids[id(original)] = index
        return index


def save_tree(tree: Any, path: str | Path) -> None:
    """Write `tree` as one safetensors file (tensors) with its JSON skeleton in the metadata."""
    encoder = _Encoder()
    skeleton = encoder.node(tree, "state")
    text = json.dumps(skeleton, allow_nan=False, separators=(",", ":"))
    save_file(encoder.tensors, str(path), metadata={FORMAT_KEY: FORMAT, TREE_KEY: text})


# checking and decoding ---------------------------------------------------------------------------
@dataclass(frozen=True)
class TreeHeader:
    skeleton: Any
    tensor_names: frozenset[str]


def describe_bytes(head: bytes) -> str:
    """What a file that is not safetensors looks like, for the error message."""
    if head[:1] == b"\x80" or head[:1] in (b"c", b"(", b"]", b"}"):
        return "a Python pickle"
    if head[:4] == b"PK\x03\x04":
        return "a zip archive (torch.save's format, which holds a pickle)"
    if not head:
        return "empty"
    return "not a safetensors file"


def read_header(path: str | Path, where: str | None = None) -> TreeHeader:
    """Check a state file by its bytes alone (nothing is unpickled or imported); return its header.

    Refuses with a StoreError naming the file: a pickle or zip where safetensors belongs, a
    truncated file, a header that is not JSON, a file without lloco's tree skeleton.
    """
    where = where or str(path)
    with open(path, "rb") as f:
        head = f.read(8)
        size = f.seek(0, 2)
        if len(head) < 8:
            raise StoreError(f"{where}: refusing to load a training state file that is {describe_bytes(head)} ({size} bytes)")
        (length,) = struct.unpack("<Q", head)
        f.seek(8)
        first = f.read(1)
        if length > MAX_HEADER_BYTES or length + 8 > size or first != b"{":
            raise StoreError(f"{where}: refusing to load a training state file that is {describe_bytes(head)}, not lloco's safetensors format")
        header_bytes = first + f.read(length - 1)
        data_bytes = size - 8 - length
    try:
        header = json.loads(header_bytes)
        metadata = header.pop("__metadata__", None) or {}
        if metadata.get(FORMAT_KEY) != FORMAT:
            raise StoreError(f"{where}: a safetensors file without lloco's training state skeleton (format {metadata.get(FORMAT_KEY)!r})")
        skeleton = json.loads(metadata[TREE_KEY])
        end = max((_tensor_end(name, info) for name, info in header.items()), default=0)
    except StoreError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as err:
        raise StoreError(f"{where}: unreadable training state header ({type(err).__name__}: {err})") from None
    if end != data_bytes:
        raise StoreError(f"{where}: training state file is truncated or padded ({data_bytes} data bytes, the header names {end})")
    found = TreeHeader(skeleton, frozenset(header))
    _decode(skeleton, dict.fromkeys(found.tensor_names), where)  # the whole tree is valid before any load
    return found


DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1}


def _tensor_end(name: str, info: Any) -> int:
    """One header entry's end offset, after checking that its size matches its dtype and shape."""
    start, end = (int(v) for v in info["data_offsets"])
    numel = math.prod(int(n) for n in info["shape"])
    if info["dtype"] not in DTYPE_BYTES or end - start != numel * DTYPE_BYTES[info["dtype"]] or start < 0:
        raise ValueError(f"tensor {name!r} has {end - start} bytes for {info['dtype']} {info['shape']}")
    return end


class _Decoder:
    def __init__(self, tensors: dict[str, torch.Tensor], where: str) -> None:
        self.tensors = tensors
        self.where = where

    def bad(self, what: str) -> StoreError:
        return StoreError(f"{self.where}: malformed training state skeleton ({what})")

    def node(self, value: Any, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise self.bad(f"nested deeper than {MAX_DEPTH}")
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, list) or not isinstance(value, dict) or len(value) != 1:
            raise self.bad(f"unexpected {type(value).__name__}")
        ((kind, body),) = value.items()
        down = depth + 1
        if kind == "dict" and isinstance(body, list) and all(isinstance(p, list) and len(p) == 2 for p in body):
            return {self.node(k, down): self.node(v, down) for k, v in body}
        if kind in ("list", "tuple", "set") and isinstance(body, list):
            items = [self.node(v, down) for v in body]
            return items if kind == "list" else (tuple(items) if kind == "tuple" else set(items))
        if kind == "tensor" and isinstance(body, int) and not isinstance(body, bool) and str(body) in self.tensors:
            return self.tensors[str(body)]
        if kind == "size" and isinstance(body, list) and all(isinstance(n, int) for n in body):
            return torch.Size(body)
        if kind == "dtype" and isinstance(body, str) and isinstance(getattr(torch, body, None), torch.dtype):
            return getattr(torch, body)
        if kind == "float" and body in NON_FINITE:
            return NON_FINITE[body]
        if kind == "enum" and isinstance(body, list) and len(body) == 2:
            return _allowed_class(body[0], ALLOWED_ENUMS, self.where)(self.node(body[1], down))
        if kind == "object" and isinstance(body, list) and len(body) == 2:
            cls = _allowed_class(body[0], ALLOWED_CLASSES, self.where)
            state = self.node(body[1], down)
            if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
                raise self.bad(f"{body[0]} state is not a dict of attributes")
            obj = cls.__new__(cls)
            obj.__dict__.update(state)
            return obj
        raise self.bad(f"unknown node {kind!r}")


def _decode(skeleton: Any, tensors: dict[str, Any], where: str) -> Any:
    try:
        return _Decoder(tensors, where).node(skeleton)
    except (TypeError, ValueError, AttributeError, ImportError) as err:  # unhashable keys, bad enum values, ...
        raise StoreError(f"{where}: malformed training state skeleton ({type(err).__name__}: {err})") from None


def load_tree(path: str | Path, map_location: Any = None, where: str | None = None) -> Any:
    """Read a file written by `save_tree`, checking its bytes first; tensors on CPU unless a device is named."""
    where = where or str(path)
    header = read_header(path, where)
    try:
        tensors = load_file(str(path), device="cpu")
    except Exception as err:  # safetensors' own validation (offsets, dtypes)
        raise StoreError(f"{where}: unreadable training state tensors ({err})") from None
    if isinstance(map_location, (str, torch.device)) and torch.device(map_location).type != "cpu":
        tensors = {k: v.to(map_location) for k, v in tensors.items()}
    if set(tensors) != header.tensor_names:
        raise StoreError(f"{where}: training state tensors do not match their header")
    return _decode(header.skeleton, tensors, where)
