"""Adapter folders and training checkpoints in the store.

    <root>/<corpus>/adapters/<adapter-key>/
        adapter_config.json, adapter_model.safetensors   standard PEFT adapter
        prompts.json, loss.json, loss.png, finetune.json  templates, loss curve, run summary
        _commits/adapter.json                             written last: the adapter is finished
        checkpoints/step-000050/…                         DeepSpeed checkpoint files of every rank
        checkpoints/_commits/step-000050.json             written after every rank uploaded

A checkpoint is saved by DeepSpeed to a local staging folder, uploaded file by file, then
committed; a reader only trusts committed steps, so a kill during upload leaves the previous
checkpoint as the newest.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lloco_core.store.commitlog import CommitLog
from lloco_core.store.storage import Store

FINISHED = "adapter"


def step_tag(step: int) -> str:
    return f"step-{step:06d}"


class AdapterStore:
    def __init__(self, store: Store, corpus: str, key: str) -> None:
        self.store = store
        self.key = key
        self.prefix = store.path(corpus, "adapters", key)
        self.log = CommitLog(store, self.prefix)
        self.checkpoints = CommitLog(store, f"{self.prefix}/checkpoints")

    @property
    def uri(self) -> str:
        return self.store.uri(self.prefix)

    # finished adapter ----------------------------------------------------------------------------
    def finished(self) -> dict[str, Any] | None:
        """The run summary of a finished adapter, or None."""
        if not self.log.is_committed(FINISHED):
            return None
        return self.store.read_json(f"{self.prefix}/finetune.json")

    def publish(self, files: dict[str, bytes], summary: dict[str, Any]) -> None:
        """Write every output file atomically, the summary, then the commit record last."""
        for name, data in files.items():
            self.store.write_bytes(f"{self.prefix}/{name}", data)
        self.store.write_json(f"{self.prefix}/finetune.json", summary)
        self.log.commit(FINISHED, {"files": sorted([*files, "finetune.json"])})

    # checkpoints ---------------------------------------------------------------------------------
    def upload_checkpoint(self, local_tag_dir: Path, step: int) -> None:
        """Upload this rank's files of one DeepSpeed checkpoint (each rank calls it)."""
        base = f"{self.prefix}/checkpoints/{step_tag(step)}"
        for path in sorted(local_tag_dir.iterdir()):
            if path.is_file():
                self.store.write_bytes(f"{base}/{path.name}", path.read_bytes())

    def commit_checkpoint(self, step: int, record: dict[str, Any]) -> None:
        """Rank 0, after every rank uploaded: the checkpoint becomes visible."""
        self.checkpoints.commit(step_tag(step), {"step": step, **record})

    def newest_checkpoint(self) -> dict[str, Any] | None:
        records = self.checkpoints.records()
        return max(records, key=lambda r: r["step"]) if records else None

    def download_checkpoint(self, step: int, local_dir: Path) -> Path:
        """All files of a committed checkpoint into `local_dir/<tag>`; returns that folder."""
        tag = step_tag(step)
        target = local_dir / tag
        target.mkdir(parents=True, exist_ok=True)
        for remote in self.store.list(f"{self.prefix}/checkpoints/{tag}"):
            self.store.fs.get(remote, str(target / os.path.basename(remote)))
        return target

    def prune_checkpoints(self, keep: int) -> None:
        """Delete all but the newest `keep` committed checkpoints: record first, then files."""
        records = sorted(self.checkpoints.records(), key=lambda r: r["step"])
        for record in records[: max(0, len(records) - keep)]:
            tag = step_tag(record["step"])
            self.store.fs.rm(self.checkpoints.record_path(tag))
            folder = f"{self.prefix}/checkpoints/{tag}"
            if self.store.exists(folder):
                self.store.fs.rm(folder, recursive=True)

    def remove_checkpoints(self) -> None:
        """After the adapter is committed, its training state is no longer needed."""
        folder = f"{self.prefix}/checkpoints"
        if self.store.exists(folder):
            self.store.fs.rm(folder, recursive=True)
