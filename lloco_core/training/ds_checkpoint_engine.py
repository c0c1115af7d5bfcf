"""DeepSpeed's checkpoint engine with pickle-free files (imported only where DeepSpeed runs).

DeepSpeed decides which files a checkpoint holds and what goes in each (module weights per model
rank, ZeRO optimizer partitions per data-parallel rank, scheduler, client state), for every ZeRO
stage and world size; all of it passes through `engine.checkpoint_engine.save/load`. Swapping that
one object keeps DeepSpeed's layout and logic and changes only the encoding: each file is a
`tensor_tree` safetensors file, and loading never calls `torch.load` (whose `weights_only=False`
in DeepSpeed's own engine unpickles, i.e. runs, whatever a file holds).
"""

from __future__ import annotations

import os
from typing import Any

from deepspeed.runtime.checkpoint_engine.checkpoint_engine import CheckpointCommitInfo, CheckpointEngine

from lloco_core.training.tensor_tree import load_tree, save_tree


class SafetensorsCheckpointEngine(CheckpointEngine):
    """save/load through `tensor_tree`; files keep DeepSpeed's names."""

    def __init__(self) -> None:
        super().__init__()
        self.name = "LlocoSafetensorsCheckpointEngine"
        self.saved: list[str] = []

    def create(self, info: CheckpointCommitInfo) -> None:
        self.saved = []

    def save(self, state_dict: Any, path: str) -> None:
        tmp = f"{path}.tmp-{os.getpid()}"
        save_tree(state_dict, tmp)
        os.replace(tmp, path)
        self.saved.append(path)

    def load(self, path: str, map_location: Any = None) -> Any:
        return load_tree(path, map_location)

    def commit(self, info: CheckpointCommitInfo) -> bool:
        return True

    def preserves_storage_sharing(self) -> bool:
        return False  # save_tree copies every tensor itself; DeepSpeed need not clone first


def install(engine: Any) -> SafetensorsCheckpointEngine:
    """Make `engine.save_checkpoint` / `load_checkpoint` pickle-free (whatever engine the config chose)."""
    engine.checkpoint_engine = SafetensorsCheckpointEngine()
    return engine.checkpoint_engine
