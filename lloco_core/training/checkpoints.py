"""Training runs in the store: a finished output folder plus committed training checkpoints.

Both trainers use it: finetune (`AdapterStore`, one LoRA adapter per corpus) and compressor
training (`CompressorStore`, an AutoCompressor checkpoint), with the same `CheckpointStore`
(saved and resumed by `engine.save_to_store` / `engine.resume_from_store`).

    <root>/<corpus>/adapters/<adapter-key>/
        adapter_config.json, adapter_model.safetensors   standard PEFT adapter
        prompts.json, loss.json, loss.png, finetune.json  templates, loss curve, run summary
        _commits/adapter.json                             written last: the adapter is finished
        checkpoints/step-000050/*.safetensors             DeepSpeed checkpoint files of every rank
        checkpoints/_commits/step-000050.json             written after every rank uploaded; names the files

    <root>/<corpus>/compressors/<compressor-key>/
        checkpoint/config.json, model.safetensors, tokenizer files   the AutoCompressor (published format)
        prompts.json, loss.json, loss.png, compressor.json           templates, loss curve, run summary
        _commits/compressor.json                                     written last, with checksums
        checkpoints/…                                                as above

A checkpoint is saved by DeepSpeed to a local staging folder, uploaded file by file, then
committed; a reader only trusts committed steps, so a kill during upload leaves the previous
checkpoint as the newest. Checkpoint files are `tensor_tree` safetensors files (no pickle): each is
checked by its bytes before upload and after download, and only the files the commit record names
are ever fetched, so a file planted beside them is never read.

Checksums: rank 0 reads the uploaded files of every rank back once and commits their size and
sha256 in the checkpoint's record (`sums`); a download checks every file against them. The adapter's record lists the size and sha256 of every file it publishes; an
adapter whose files a listing shows missing or resized is not finished (the next finetune trains
it again), and the files that are read are checked against their sha256.
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
from lloco_core.store.storage import SEGMENT, Store

FINISHED = "adapter"
LOCAL_SUFFIX = ".pt"  # DeepSpeed's file names; in the store they say what they hold
STORED_SUFFIX = ".safetensors"


def read_checked(store: Store, path: str, expected: FileSum | None) -> bytes:
    """A file's bytes, checked against its recorded size and sha256 when there is one."""
    data = store.read_bytes(path)
    if expected is not None and (len(data), hashlib.sha256(data).hexdigest()) != (expected.size, expected.sha256):
        raise StoreError(f"{store.uri(path)}: bytes do not match the checksum in its commit record (corrupt or replaced; run `lloco verify --repair`)")
    return data


def step_tag(step: int) -> str:
    return f"step-{step:06d}"


def stored_name(local_name: str) -> str:
    return local_name.removesuffix(LOCAL_SUFFIX) + STORED_SUFFIX


def local_name(stored: str) -> str:
    return stored.removesuffix(STORED_SUFFIX) + LOCAL_SUFFIX


class CheckpointStore:
    """Committed training checkpoints under one prefix (any training loop: adapters, compressors)."""

    def __init__(self, store: Store, prefix: str) -> None:
        self.store = store
        self.prefix = prefix
        self.log: CommitLog[CheckpointRecord] = CommitLog(store, prefix, CheckpointRecord)

    def folder(self, step: int) -> str:
        return f"{self.prefix}/{step_tag(step)}"

    def upload(self, local_tag_dir: Path, step: int) -> list[str]:
        """Upload this rank's files of one checkpoint (each rank calls it); returns their stored names.

        Every file must already be pickle-free: a DeepSpeed path that bypassed the safetensors
        engine would fail here, before anything unsafe reaches the store.
        """
        from lloco_core.training.tensor_tree import read_header  # torch: only training needs it, not `lloco status`

        names = []
        for path in sorted(local_tag_dir.iterdir()):
            if path.is_file() and not path.is_symlink():
                read_header(path)
                name = stored_name(path.name)
                self.store.write_bytes(f"{self.folder(step)}/{name}", path.read_bytes())
                names.append(name)
        return names

    def commit(self, step: int, record: dict[str, Any]) -> dict[str, Any]:
        """Rank 0, after every rank uploaded: the checkpoint becomes visible, naming its files."""
        files = sorted(os.path.basename(p) for p in self.store.list(self.folder(step), suffix=STORED_SUFFIX))
        # checksums of the bytes as stored (every rank's files, read back once: LoRA state is small)
        sums = {name: FileSum.of(self.store.read_bytes(f"{self.folder(step)}/{name}")) for name in files}
        committed = self.log.commit(step_tag(step), {"step": step, **record, "files": files, "sums": sums})
        return committed.model_dump(mode="json")

    def records(self) -> list[dict[str, Any]]:
        """Committed checkpoints, newest step first (records that do not validate are skipped)."""
        return sorted((r.model_dump(mode="json") for r in self.log.records()), key=lambda r: r["step"], reverse=True)

    def newest(self) -> dict[str, Any] | None:
        records = self.records()
        return records[0] if records else None

    def download(self, record: dict[str, Any], local_dir: Path) -> Path:
        """The files a commit record names into `local_dir/<tag>` (DeepSpeed's names), each checked
        by its bytes; a StoreError names every file that is missing or not pickle-free."""
        step = record.get("step")
        files = record.get("files")
        where = self.store.uri(self.log.record_path(str(record.get("name"))))
        if not isinstance(step, int) or not isinstance(files, list) or not files:
            raise StoreError(f"{where}: checkpoint record names no files (written before checkpoints were pickle-free?)")
        target = local_dir / step_tag(step)
        target.mkdir(parents=True, exist_ok=True)
        problems = []
        from lloco_core.training.tensor_tree import read_header

        for name in files:
            if not isinstance(name, str) or not SEGMENT.match(name) or not name.endswith(STORED_SUFFIX):
                problems.append(f"{where}: checkpoint file name {name!r} is not allowed")
                continue
            remote = f"{self.folder(step)}/{name}"
            if not self.store.exists(remote):
                problems.append(f"{self.store.uri(remote)}: checkpoint file is missing")
                continue
            local = target / local_name(name)
            self.store.fs.get(remote, str(local))
            try:
                read_header(local, where=self.store.uri(remote))  # what it is first (a pickle is named as one) ...
                expected = record.get("sums", {}).get(name)
                if expected and FileSum.of(local.read_bytes()) != FileSum.model_validate(expected):  # ... then whether it is what was committed
                    raise StoreError(f"{self.store.uri(remote)}: bytes do not match the checksum in its commit record")
            except (StoreError, ValueError) as err:
                problems.append(str(err))
        if problems:
            raise StoreError("; ".join(problems))
        return target

    def prune(self, keep: int) -> None:
        """Delete all but the newest `keep` committed checkpoints: record first, then files."""
        for record in self.records()[keep:]:
            tag = step_tag(record["step"])
            found = self.log.find(tag)
            if found is not None:
                self.store.delete(found[1])
            if self.store.exists(self.folder(record["step"])):
                self.store.fs.rm(self.folder(record["step"]), recursive=True)

    def remove(self) -> None:
        """After the trained result is committed, its training state is no longer needed."""
        if self.store.exists(self.prefix):
            self.store.fs.rm(self.prefix, recursive=True)


class TrainedRun:
    """One training run's folder: output files + a summary committed (with checksums) by a record
    named `finished_name`, and its training checkpoints under `checkpoints/`."""

    kind = "adapters"
    finished_name = FINISHED
    summary_file = "finetune.json"
    required_files: tuple[str, ...] = ("adapter_config.json", "adapter_model.safetensors", "finetune.json")

    def __init__(self, store: Store, corpus: str, key: str) -> None:
        self.store = store
        self.key = key
        self.prefix = store.path(corpus, self.kind, key)
        self.log: CommitLog[AdapterRecord] = CommitLog(store, self.prefix, AdapterRecord)
        self.checkpoints = CheckpointStore(store, f"{self.prefix}/checkpoints")

    @property
    def uri(self) -> str:
        return self.store.uri(self.prefix)

    # finished output -----------------------------------------------------------------------------
    def record(self) -> AdapterRecord | None:
        found = self.log.find(self.finished_name)
        return found[0] if found else None

    def finished(self) -> dict[str, Any] | None:
        """The run summary of a finished run, or None (also when a listing shows one of its
        files missing or resized: the next run then trains it again)."""
        record = self.record()
        if record is None:
            return None
        sums = record.sums()
        expected = {name: item.size for name, item in sums.items()} or {name: None for name in self.required_files}
        sizes = {}
        for folder in sorted({os.path.dirname(name) for name in expected}):  # one listing per folder (the compressor has a sub-folder)
            where = f"{folder}/" if folder else ""
            sizes |= {where + os.path.basename(p): s for p, s in self.store.list_sizes(f"{self.prefix}/{where}".rstrip("/")).items()}
        if any(name not in sizes or size not in (None, sizes[name]) for name, size in expected.items()):
            return None
        return json.loads(read_checked(self.store, f"{self.prefix}/{self.summary_file}", sums.get(self.summary_file)))

    def publish(self, files: dict[str, bytes], summary: dict[str, Any]) -> None:
        """Write every output file atomically, the summary, then the commit record (with checksums) last."""
        files = {**files, self.summary_file: json.dumps(summary, indent=1, sort_keys=True).encode()}
        for name, data in files.items():
            self.store.write_bytes(f"{self.prefix}/{check_relative(name)}", data)
        self.log.commit(self.finished_name, {"files": {name: FileSum.of(data) for name, data in sorted(files.items())}})


class AdapterStore(TrainedRun):
    """`<root>/<corpus>/adapters/<adapter-key>/`: a finetuned LoRA adapter."""


class CompressorStore(TrainedRun):
    """`<root>/<corpus>/compressors/<compressor-key>/`: a trained AutoCompressor checkpoint."""

    kind = "compressors"
    finished_name = "compressor"
    summary_file = "compressor.json"
    checkpoint_folder = "checkpoint"
    required_files = ("checkpoint/config.json", "checkpoint/model.safetensors", "compressor.json")
