"""Content keys: the encoder key hashes the weights (not their path), so a copied checkpoint
reuses its embeddings and a retrained one never does. Only the weight files that load (one layout:
safetensors when a folder has both) are hashed, with the config and tokenizer files."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from lloco_core.model.checkpoint import WEIGHT_INDEXES, find_weight_files

METADATA_SUFFIXES = (".json", ".model")  # config, tokenizer (tokenizer.json or SentencePiece)
IGNORED_METADATA = frozenset({"generation_config.json"}) | WEIGHT_INDEXES
CACHE_FILE = Path(os.environ.get("LLOCO_CACHE_DIR", Path.home() / ".cache" / "lloco")) / "file-hashes.json"


def stable_hash(value: Any, length: int = 16) -> str:
    """sha256 of canonical JSON: the same inputs give the same key in every process."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:length]


def _file_sha256(path: Path, cache: dict[str, str]) -> str:
    if path.is_symlink() and path.parent.parent.name == "snapshots":
        return os.path.basename(os.readlink(path))  # hub cache: the blob is named by its hash
    stat = path.stat()
    cache_key = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    if cache_key not in cache:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 24), b""):
                digest.update(block)
        cache[cache_key] = digest.hexdigest()
    return cache[cache_key]


def checkpoint_files(folder: str | Path) -> list[Path]:
    """The files a loaded checkpoint depends on: the weight files of the layout that loads (with
    its index) plus config and tokenizer files."""
    folder = Path(folder)
    metadata = [p for p in folder.iterdir() if p.suffix in METADATA_SUFFIXES and p.name not in IGNORED_METADATA]
    return sorted({*metadata, *find_weight_files(folder).files})


def checkpoint_fingerprint(folder: str | Path) -> str:
    """Hash of a checkpoint's weights, config and tokenizer files (sizes+mtimes cache the hashes)."""
    files = checkpoint_files(folder)
    try:
        cache = json.loads(CACHE_FILE.read_text())
    except (OSError, ValueError):
        cache = {}
    digest = stable_hash({p.name: _file_sha256(p, cache) for p in files}, 32)
    try:
        CACHE_FILE.parent.mkdir(parents=True, exist_ok=True)
        tmp = CACHE_FILE.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache))
        tmp.replace(CACHE_FILE)
    except OSError:
        pass  # a read-only home only costs re-hashing
    return digest
