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

Checksums: the adapter's record lists the size and sha256 of every file it publishes; each rank
writes `_sums-<rank files digest>.json` beside its checkpoint files, and rank 0 folds them into the
checkpoint's record. Downloads check every byte against them (StoreError names a bad file), and a
checkpoint whose files a listing shows missing or resized is not offered for resuming.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from lloco_core.errors import StoreError
from lloco_core.store.commitlog import CommitLog
from lloco_core.store.records import (
    AdapterRecord,
    CheckpointRecord,
    FileSum,
    check_relative,
)
from lloco_core.store.storage import Store

FINISHED = "adapter"


def step_tag(step: int) -> str:
    return f"step-{step:06d}"


SUMS_PREFIX = "_sums-"


def read_checked(store: Store, path: str, expected: FileSum | None) -> bytes:
    """A file's bytes, checked against its recorded size and sha256 when there is one."""
    data = store.read_bytes(path)
    if expected is not None and (len(data), hashlib.sha256(data).hexdigest()) != (expected.size, expected.sha256):
        raise StoreError(f"{store.uri(path)}: bytes do not match the checksum in its commit record (corrupt or replaced; run `lloco verify --repair`)")
    return data


class AdapterStore:
    def __init__(self, store: Store, corpus: str, key: str) -> None:
        self.store = store
        self.key = key
        self.prefix = store.path(corpus, "adapters", key)
        self.log: CommitLog[AdapterRecord] = CommitLog(store, self.prefix, AdapterRecord)
        self.checkpoints: CommitLog[CheckpointRecord] = CommitLog(store, f"{self.prefix}/checkpoints", CheckpointRecord)

    @property
    def uri(self) -> str:
        return self.store.uri(self.prefix)

    # finished adapter ----------------------------------------------------------------------------
    def record(self) -> AdapterRecord | None:
        found = self.log.find(FINISHED)
        return found[0] if found else None

    def finished(self) -> dict[str, Any] | None:
        """The run summary of a finished adapter, or None (also when a listing shows one of its
        files missing or resized: the next finetune then trains it again)."""
        record = self.record()
        if record is None:
            return None
        sums = record.sums()
        sizes = {os.path.basename(p): s for p, s in self.store.list_sizes(self.prefix).items()}
        expected = {name: item.size for name, item in sums.items()} or {name: None for name in ("adapter_config.json", "adapter_model.safetensors", "finetune.json")}
        if any(name not in sizes or size not in (None, sizes[name]) for name, size in expected.items()):
            return None
        return json.loads(read_checked(self.store, f"{self.prefix}/finetune.json", sums.get("finetune.json")))

    def publish(self, files: dict[str, bytes], summary: dict[str, Any]) -> None:
        """Write every output file atomically, the summary, then the commit record (with checksums) last."""
        files = {**files, "finetune.json": json.dumps(summary, indent=1, sort_keys=True).encode()}
        for name, data in files.items():
            self.store.write_bytes(f"{self.prefix}/{check_relative(name)}", data)
        self.log.commit(FINISHED, {"files": {name: FileSum.of(data) for name, data in sorted(files.items())}})

    # checkpoints ---------------------------------------------------------------------------------
    def upload_checkpoint(self, local_tag_dir: Path, step: int) -> None:
        """Upload this rank's files of one DeepSpeed checkpoint (each rank calls it), then their checksums."""
        base = f"{self.prefix}/checkpoints/{step_tag(step)}"
        sums = {}
        for path in sorted(local_tag_dir.iterdir()):
            if path.is_file():
                data = path.read_bytes()
                self.store.write_bytes(f"{base}/{check_relative(path.name)}", data)
                sums[path.name] = FileSum.of(data).model_dump()
        digest = hashlib.sha256("\n".join(sorted(sums)).encode()).hexdigest()[:16]
        self.store.write_json(f"{base}/{SUMS_PREFIX}{digest}.json", sums)

    def commit_checkpoint(self, step: int, record: dict[str, Any]) -> None:
        """Rank 0, after every rank uploaded: the checkpoint becomes visible, with every rank's checksums."""
        base = f"{self.prefix}/checkpoints/{step_tag(step)}"
        files: dict[str, Any] = {}
        for path in self.store.list(base, ".json"):
            if os.path.basename(path).startswith(SUMS_PREFIX):
                files.update(self.store.read_json(path))
        self.checkpoints.commit(step_tag(step), {**record, "step": step, "files": files})

    def newest_checkpoint(self) -> dict[str, Any] | None:
        """The newest committed checkpoint whose files are all there with their recorded sizes."""
        for record in sorted(self.checkpoints.records(), key=lambda r: r.step, reverse=True):
            sizes = {os.path.basename(p): s for p, s in self.store.list_sizes(f"{self.prefix}/checkpoints/{step_tag(record.step)}").items()}
            if all(sizes.get(name) == item.size for name, item in record.files.items()):
                return record.model_dump(mode="json")
        return None

    def download_checkpoint(self, step: int, local_dir: Path) -> Path:
        """All files of a committed checkpoint into `local_dir/<tag>`, each checked against its checksum."""
        tag = step_tag(step)
        found = self.checkpoints.find(tag)
        sums = found[0].files if found else {}
        target = local_dir / tag
        target.mkdir(parents=True, exist_ok=True)
        remotes = self.store.list(f"{self.prefix}/checkpoints/{tag}")
        missing = sorted(set(sums) - {os.path.basename(r) for r in remotes})
        if missing:
            raise StoreError(f"{self.store.uri(self.prefix)}/checkpoints/{tag}: committed file {missing[0]!r} is missing")
        for remote in remotes:
            name = os.path.basename(remote)
            if name.startswith(SUMS_PREFIX):
                continue
            if sums and name not in sums:
                continue  # not part of the commit (a stray upload): never loaded
            (target / name).write_bytes(read_checked(self.store, remote, sums.get(name)))
        return target

    def prune_checkpoints(self, keep: int) -> None:
        """Delete all but the newest `keep` committed checkpoints: record first, then files."""
        records = sorted(self.checkpoints.records(), key=lambda r: r.step)
        for record in records[: max(0, len(records) - keep)]:
            tag = step_tag(record.step)
            found = self.checkpoints.find(tag)
            if found:
                self.store.delete(found[1])
            folder = f"{self.prefix}/checkpoints/{tag}"
            if self.store.exists(folder):
                self.store.fs.rm(folder, recursive=True)

    def remove_checkpoints(self) -> None:
        """After the adapter is committed, its training state is no longer needed."""
        folder = f"{self.prefix}/checkpoints"
        if self.store.exists(folder):
            self.store.fs.rm(folder, recursive=True)
