"""Flow `train-compressor`: turn a base LLaMA model into an AutoCompressor trained on one corpus."""

from __future__ import annotations

from typing import Any

from prefect import flow
from pydantic import Field

from lloco_core.training.compressor_config import CompressorConfig
from tasks.train_compressor import train_compressor_task


class CompressorFlowConfig(CompressorConfig):
    launcher: str | None = Field(default=None, description="Multi-GPU launcher prefix, e.g. 'deepspeed --num_gpus 4'; empty = one process.")


@flow(name="train-compressor", flow_run_name="train-compressor-{config.corpus}")
def train_compressor_flow(config: CompressorFlowConfig) -> dict[str, Any]:
    options = config.model_dump(exclude={"launcher"})
    return train_compressor_task(CompressorConfig(**options), config.launcher)
