"""Evaluate task: one call of `lloco_core.qa.evaluate.evaluate`. The store is the cache: a finished
report under the same eval key (adapter + eval set + settings) is returned without loading a model."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task

from lloco_core.qa.config import EvaluateConfig
from lloco_core.qa.evaluate import evaluate

from ._caching import STORAGE_RETRIES


@task(name="evaluate", task_run_name="evaluate-{config.corpus}", **STORAGE_RETRIES)
def evaluate_task(config: EvaluateConfig) -> dict[str, Any]:
    summary = evaluate(config)
    get_run_logger().info("%s: eval %s over %d examples%s -> %s", config.corpus, summary["eval_key"], summary["examples"], " (cached)" if summary.get("cached") else "", summary["out"])
    return summary
