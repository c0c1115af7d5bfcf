"""Training runs in the store: a finished output folder plus committed training checkpoints.

Both trainers use it: finetune (`AdapterStore`, one LoRA adapter per corpus) and compressor
training (`CompressorStore`, an AutoCompressor checkpoint), with the same checkpoint mechanism
(`save_checkpoint` / `resume_checkpoint`).

    <root>/<corpus>/adapters/<adapter-key>/
        adapter_config.json, adapter_model.safetensors   standard PEFT adapter
        prompts.json, loss.json, loss.png, finetune.json  templates, loss curve, run summary
        _commits/adapter.json                             written last: the adapter is finished
        checkpoints/step-000050/…                         DeepSpeed checkpoint files of every rank
        checkpoints/_commits/step-000050.json             written after every rank uploaded

A checkpoint is saved by DeepSpeed to a local staging folder, uploaded file by file, then
committed; a reader only trusts committed steps, so a kill during upload leaves the previous
checkpoint as the newest.

    <root>/<corpus>/compressors/<compressor-key>/
        checkpoint/config.json, model.safetensors, tokenizer files   the AutoCompressor (published format)
        prompts.json, loss.json, loss.png, compressor.json           templates, loss curve, run summary
        _commits/compressor.json                                     written last
        checkpoints/…                                                as above
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


class TrainingRun:
    """One training run's folder: output files + summary committed by `finished_name`, and checkpoints."""

    finished_name = FINISHED
    summary_file = "finetune.json"

    def __init__(self, store: Store, prefix: str, key: str) -> None:
        self.store = store
        self.key = key
        self.prefix = prefix
        self.log = CommitLog(store, self.prefix)
        self.checkpoints = CommitLog(store, f"{self.prefix}/checkpoints")

    @property
    def uri(self) -> str:
        return self.store.uri(self.prefix)

    # finished adapter ----------------------------------------------------------------------------
    def finished(self) -> dict[str, Any] | None:
        """The run summary of a finished adapter, or None."""
        if not self.log.is_committed(self.finished_name):
            return None
        return self.store.read_json(f"{self.prefix}/{self.summary_file}")

    def publish(self, files: dict[str, bytes], summary: dict[str, Any]) -> None:
        """Write every output file atomically, the summary, then the commit record last."""
        for name, data in files.items():
            self.store.write_bytes(f"{self.prefix}/{name}", data)
        self.store.write_json(f"{self.prefix}/{self.summary_file}", summary)
        self.log.commit(self.finished_name, {"files": sorted([*files, self.summary_file])})

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


class AdapterStore(TrainingRun):
    """`<root>/<corpus>/adapters/<adapter-key>/`: a finetuned LoRA adapter."""

    def __init__(self, store: Store, corpus: str, key: str) -> None:
        super().__init__(store, store.path(corpus, "adapters", key), key)


class CompressorStore(TrainingRun):
    """`<root>/<corpus>/compressors/<compressor-key>/`: a trained AutoCompressor checkpoint."""

    finished_name = "compressor"
    summary_file = "compressor.json"
    checkpoint_folder = "checkpoint"

    def __init__(self, store: Store, corpus: str, key: str) -> None:
        super().__init__(store, store.path(corpus, "compressors", key), key)


def save_checkpoint(engine: Any, run: TrainingRun, env: Any, staging: str, step: int, client_state: dict[str, Any], keep: int) -> str:
    """DeepSpeed saves locally (trainable weights, optimizer partitions, scheduler, `client_state`),
    every rank uploads its files, rank 0 commits and prunes older checkpoints. Returns the URI."""
    import torch.distributed as dist

    from lloco_core.training.engine import rng_state

    tag = step_tag(step)
    local = Path(staging) / "save"
    engine.save_checkpoint(str(local), tag=tag, client_state={**client_state, "step": step, "rng": rng_state()}, save_latest=False, exclude_frozen_parameters=True)
    run.upload_checkpoint(local / tag, step)
    if env.world_size > 1:
        dist.barrier()
    if env.is_main:
        run.commit_checkpoint(step, {"world_size": env.world_size})
        run.prune_checkpoints(keep)
    for path in (local / tag).iterdir():
        path.unlink()
    return f"{run.uri}/checkpoints/{tag}"


def resume_checkpoint(engine: Any, run: TrainingRun, staging: str) -> dict[str, Any] | None:
    """Load the newest committed checkpoint into `engine` (weights, optimizer, scheduler, RNG);
    returns its client state, or None when the run has no checkpoint."""
    from lloco_core.training.engine import set_rng_state

    newest = run.newest_checkpoint()
    if newest is None:
        return None
    local = run.download_checkpoint(newest["step"], Path(staging) / "resume")
    _, client = engine.load_checkpoint(str(local.parent), tag=local.name, load_module_strict=False, load_optimizer_states=True, load_lr_scheduler_states=True)
    set_rng_state(client["rng"])
    return client
