"""DeepSpeed set-up: process environment, the engine config, and the engine itself.

Launch modes:
- one process (CLI, tests, a Prefect task's subprocess): world size 1 is set up here
  (RANK/WORLD_SIZE/LOCAL_RANK, MASTER_ADDR 127.0.0.1 and a free MASTER_PORT).
- several GPUs: `deepspeed --num_gpus N -m lloco_core.training.finetune …` or
  `torchrun --nproc_per_node N -m lloco_core.training.finetune …`; the launcher sets the environment.

On CPU the DeepSpeed CPU accelerator runs with gloo. At world size 1 its shared-memory
all-reduce op is never used, so it is marked unavailable before the engine starts: that skips a
~70 s JIT compile on a fresh machine. The optimizer is a torch AdamW object, so DeepSpeed never
compiles `fused_adam`.

Checkpoints: every engine made by `initialize` saves and loads through a pickle-free checkpoint
engine (`ds_checkpoint_engine`), and `save_to_store` / `resume_from_store` move its files through a
`CheckpointStore`. Any training loop that builds its engine here and checkpoints with these two gets
store checkpoints that cannot run code when they are loaded.
"""

from __future__ import annotations

import os
import socket
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lloco_core.errors import StoreError
from lloco_core.training.checkpoints import CheckpointStore, TrainedRun, step_tag


@dataclass(frozen=True)
class DistEnv:
    rank: int
    local_rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prepare_environment(use_cuda: bool) -> DistEnv:
    """Fill in a world-size-1 environment unless a launcher already did; pick the accelerator."""
    if not use_cuda:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    if "RANK" not in os.environ:
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1")
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
    os.environ.setdefault("LOCAL_RANK", "0")
    return DistEnv(int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"]), int(os.environ["WORLD_SIZE"]))


DIST_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def child_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a new training process: without this process's rank and rendezvous.

    An in-process finetune sets RANK/MASTER_PORT here (and torch.distributed keeps that port bound),
    so a child inheriting them would try to rendezvous on a port that is already taken.
    """
    env = dict(os.environ if environ is None else environ)
    for name in DIST_VARIABLES:
        env.pop(name, None)
    return env


def init_distributed(env: DistEnv, use_cuda: bool) -> None:
    import deepspeed

    if env.world_size == 1 and not use_cuda:
        # Edits to this dict persist (deepspeed/ops/__init__.py caches it for that purpose).
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    if use_cuda:
        torch.cuda.set_device(env.local_rank)
    deepspeed.init_distributed(dist_backend="nccl" if use_cuda else "gloo")


def deepspeed_config(micro_batch_size: int, grad_accum: int, world_size: int, zero_stage: int, bf16: bool, max_grad_norm: float) -> dict[str, Any]:
    """The engine config (ZeRO stage, precision, batch sizes). Optimizer and scheduler are objects."""
    return {
        "train_micro_batch_size_per_gpu": micro_batch_size,
        "gradient_accumulation_steps": grad_accum,
        "train_batch_size": micro_batch_size * grad_accum * world_size,
        "gradient_clipping": max_grad_norm,
        "zero_optimization": {"stage": zero_stage},
        "zero_allow_untested_optimizer": True,
        "bf16": {"enabled": bf16},
        "steps_per_print": 1 << 30,
        "wall_clock_breakdown": False,
    }


def initialize(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, config: dict[str, Any]) -> Any:
    """`deepspeed.initialize` with torch optimizer/scheduler objects; returns the engine."""
    import deepspeed

    from lloco_core.training.ds_checkpoint_engine import install

    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=scheduler, config=config)
    install(engine)
    return engine


def save_to_store(engine: Any, checkpoints: CheckpointStore, env: DistEnv, staging: str | Path, step: int, client_state: dict[str, Any], record: dict[str, Any], keep: int) -> None:
    """One checkpoint: DeepSpeed saves locally (pickle-free), every rank uploads its files, rank 0 commits and prunes.

    `client_state` is the loop's own state (step, data position, RNG, loss curve): tensors and plain values.
    """
    import torch.distributed as dist

    tag = step_tag(step)
    local = Path(staging) / "save"
    engine.save_checkpoint(str(local), tag=tag, client_state=client_state, save_latest=False, exclude_frozen_parameters=True)
    checkpoints.upload(local / tag, step)
    if env.world_size > 1:
        dist.barrier()
    if env.is_main:
        checkpoints.commit(step, {**record, "world_size": env.world_size})
        checkpoints.prune(keep)
    for path in (local / tag).iterdir():
        path.unlink()


@dataclass
class Resumed:
    """What `resume_from_store` found: the loop's client state (None = start fresh) and refused checkpoints."""

    client_state: dict[str, Any] | None = None
    step: int = 0
    refused: list[dict[str, str]] = field(default_factory=list)


def resume_from_store(engine: Any, checkpoints: CheckpointStore, staging: str | Path) -> Resumed:
    """Load the newest committed checkpoint whose files are all intact and pickle-free.

    Every file is checked by its bytes and its whole tree before DeepSpeed touches the engine, so a
    refused checkpoint leaves the engine as it was; it is listed, and the next older one is tried
    (none left = start fresh, which gives the same result, only later). Every rank reads the same
    files, so every rank makes the same choice.
    """
    resumed = Resumed()
    for record in checkpoints.records():
        where = checkpoints.store.uri(checkpoints.folder(record["step"]))
        try:
            local = checkpoints.download(record, Path(staging) / "resume")  # checks every file's bytes and tree
        except StoreError as err:
            resumed.refused.append({"checkpoint": where, "reason": str(err)})
            continue
        _, client = engine.load_checkpoint(str(local.parent), tag=local.name, load_module_strict=False, load_optimizer_states=True, load_lr_scheduler_states=True)
        resumed.client_state, resumed.step = client, record["step"]
        break
    return resumed


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def publish_run(
    run: TrainedRun, env: DistEnv, staging: tempfile.TemporaryDirectory, files: Callable[[], dict[str, bytes]],
    curve: list[dict[str, Any]], title: str, summary: dict[str, Any],
) -> None:
    """End of a training run: rank 0 publishes its files with the loss curve (JSON and plot) and the
    summary, committed last, then drops the training checkpoints; every rank waits for that, then
    removes its local staging folder."""
    if env.is_main:
        from lloco_core.plotting import loss_curve_png

        output = {**files(), "loss.json": json.dumps(curve, indent=1).encode(), "loss.png": loss_curve_png(curve, title)}
        run.publish(output, summary)
        run.checkpoints.remove()
    if env.world_size > 1:
        import torch.distributed as dist

        dist.barrier()
    staging.cleanup()
