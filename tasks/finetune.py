"""Finetune task: runs `python -m lloco_core.training.finetune` in a subprocess so DeepSpeed gets its own
process and environment (on a GPU worker the same command can be `deepspeed --num_gpus N -m …`).

Cache key = the adapter key while the finished adapter is committed in the store; a killed or
retried run resumes from the store's newest checkpoint. Progress lines from the subprocess feed a
Prefect progress artifact; the loss curve becomes a table artifact.
"""

from __future__ import annotations

import shlex
import sys
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact

from lloco_core.store.storage import Store
from lloco_core.training.checkpoints import AdapterStore
from lloco_core.training.finetune import FinetuneConfig, plan_finetune

from ._caching import STORAGE_RETRIES, CommittedOutput
from ._training import artifact_key, child_error, run_training_child

__all__ = ["finetune_task", "finetune_command", "child_error"]


def finetune_command(config: FinetuneConfig, launcher: str | None = None) -> list[str]:
    """`python -m lloco_core.training.finetune --field value …`, or under a launcher such as `deepspeed --num_gpus 4`."""
    args = ["--config-json", config.model_dump_json()]
    head = [*shlex.split(launcher), "-m", "lloco_core.training.finetune"] if launcher else [sys.executable, "-m", "lloco_core.training.finetune"]
    return [*head, *args]


def _adapter_key(inputs: dict[str, Any]) -> str:
    return f"lloco/finetune/{inputs['config'].corpus}/{plan_finetune(inputs['config']).adapter_key}"


def _adapter_committed(inputs: dict[str, Any]) -> bool:
    config: FinetuneConfig = inputs["config"]
    try:
        plan = plan_finetune(config)
    except Exception:  # bad input: no cache key, the run reports the error
        return False
    return AdapterStore(Store.from_config(config), config.corpus, plan.adapter_key).finished() is not None


@task(name="finetune", task_run_name="finetune-{config.corpus}", cache_policy=CommittedOutput(_adapter_key, _adapter_committed), **STORAGE_RETRIES)
def finetune_task(config: FinetuneConfig, launcher: str | None = None) -> dict[str, Any]:
    """Train (or reuse) the corpus adapter in a subprocess; returns its summary (URIs, no tensors)."""
    logger = get_run_logger()
    progress = create_progress_artifact(0.0, key=artifact_key("finetune", config.corpus), description=f"Finetune steps of {config.corpus}")
    summary = run_training_child(finetune_command(config, launcher), progress, logger, "finetune")
    update_progress_artifact(progress, 100.0)
    adapters = AdapterStore(Store.from_config(config), config.corpus, summary["adapter_key"])
    curve = adapters.store.read_json(f"{adapters.prefix}/loss.json")
    create_table_artifact(key=artifact_key("finetune", config.corpus, "loss"), table=curve, description=f"Training loss of {summary['adapter_key']}")
    logger.info("adapter %s: %s steps, loss %s -> %s, %s tokens/s, reused=%s", summary["adapter_key"], summary["steps"], summary["first_loss"], summary["last_loss"], summary["tokens_per_s"], summary["reused"])
    return summary
