"""Flow `finetune`: train (or reuse) one corpus's LoRA adapter on its compressed contexts."""

from __future__ import annotations

from typing import Any

from prefect import flow
from pydantic import Field

from lloco_core.training.finetune import FinetuneConfig
from tasks.finetune import finetune_task


class FinetuneFlowConfig(FinetuneConfig):
    launcher: str | None = Field(default=None, description="Multi-GPU launcher prefix, e.g. 'deepspeed --num_gpus 4'; empty = one process.")


@flow(name="finetune", flow_run_name="finetune-{config.corpus}")
def finetune_flow(config: FinetuneFlowConfig) -> dict[str, Any]:
    options = config.model_dump(exclude={"launcher"})
    return finetune_task(FinetuneConfig(**options), config.launcher)
