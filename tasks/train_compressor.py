"""Train-compressor task: runs `python -m lloco_core.training.compressor` in a subprocess so DeepSpeed
gets its own process and environment (on a GPU worker the same command can run under a launcher).

Cache key = the compressor key while the finished compressor is committed in the store and its local
checkpoint folder (what later stages load) exists; a killed or retried run resumes from the store's
newest checkpoint. Progress lines from the subprocess feed a Prefect progress artifact; the loss
curve becomes a table artifact.
"""

from __future__ import annotations

import os
import shlex
import sys
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact

from lloco_core.training.compressor import materialized_folder, plan_compressor
from lloco_core.training.compressor_config import CompressorConfig

from ._caching import STORAGE_RETRIES, CommittedOutput
from ._training import artifact_key, run_training_child


def compressor_command(config: CompressorConfig, launcher: str | None = None) -> list[str]:
    """`python -m lloco_core.training.compressor --config-json …`, or under a launcher such as `deepspeed --num_gpus 4`."""
    head = [*shlex.split(launcher), "-m", "lloco_core.training.compressor"] if launcher else [sys.executable, "-m", "lloco_core.training.compressor"]
    return [*head, "--config-json", config.model_dump_json()]


def _compressor_key(inputs: dict[str, Any]) -> str:
    return f"lloco/train-compressor/{inputs['config'].corpus}/{plan_compressor(inputs['config']).key}"


def _compressor_ready(inputs: dict[str, Any]) -> bool:
    """Finished in the store, and its checkpoint folder present on this machine."""
    try:
        plan = plan_compressor(inputs["config"])
    except Exception:  # bad input: no cache hit, the run reports the error
        return False
    return plan.run.finished() is not None and os.path.isfile(os.path.join(materialized_folder(plan.run, inputs["config"].out), "config.json"))


@task(name="train-compressor", task_run_name="train-compressor-{config.corpus}", cache_policy=CommittedOutput(_compressor_key, _compressor_ready), **STORAGE_RETRIES)
def train_compressor_task(config: CompressorConfig, launcher: str | None = None) -> dict[str, Any]:
    """Train (or reuse) a compressor in a subprocess; returns its summary with the local `checkpoint` folder."""
    logger = get_run_logger()
    progress = create_progress_artifact(0.0, key=artifact_key("train-compressor", config.corpus), description=f"Compressor training steps on {config.corpus}")
    summary = run_training_child(compressor_command(config, launcher), progress, logger, "train-compressor")
    update_progress_artifact(progress, 100.0)
    run = plan_compressor(config).run
    curve = run.store.read_json(f"{run.prefix}/loss.json")
    create_table_artifact(key=artifact_key("train-compressor", config.corpus, "loss"), table=curve, description=f"Training loss of {summary['compressor_key']}")
    logger.info(
        "compressor %s: %s steps, loss %s -> %s, %s tokens/s, reused=%s, checkpoint %s",
        summary["compressor_key"], summary["steps"], summary["first_loss"], summary["last_loss"], summary.get("tokens_per_s"), summary["reused"], summary["checkpoint"],
    )
    return summary
