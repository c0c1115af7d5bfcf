"""Flow `evaluate`: compare LLoCO with the baselines on an eval set; the report goes to the store and
to Prefect as a table artifact (one row per system) and a markdown artifact (report.md)."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from lloco_core.qa.config import EvaluateConfig
from lloco_core.qa.report import SYSTEM_LABELS, render_markdown
from tasks.evaluate import evaluate_task

from .compress import artifact_key


def system_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"system": SYSTEM_LABELS.get(name, name), "score": s["score"], "mean_prompt_tokens": s["mean_prompt_tokens"],
         "compression_ratio": s["compression_ratio"], "mean_latency_s": s["mean_latency_s"], "examples": s["examples"]}
        for name, s in summary["systems"].items()
    ]


@flow(name="evaluate", flow_run_name="evaluate-{config.corpus}")
def evaluate_flow(config: EvaluateConfig) -> dict[str, Any]:
    summary = evaluate_task(config)
    key = artifact_key("evaluate", config.corpus)
    create_table_artifact(key=key, table=system_rows(summary), description=f"Evaluation {summary['eval_key']} of {config.corpus}: {summary['out']}")
    create_markdown_artifact(key=f"{key}-report", markdown=render_markdown(summary), description=f"report.md of {summary['eval_key']}")
    return summary
