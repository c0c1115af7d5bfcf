"""The forms of the lloco deployments, checked with the validator the Prefect server runs
(enforce_parameter_schema), without a server: defaults render, bad values are refused."""

from __future__ import annotations

from typing import Any

import pytest
from prefect.utilities.callables import parameter_schema
from prefect.utilities.schema_tools.validation import is_valid

from flows.backfill import BackfillConfig, backfill_flow, child_parameters
from flows.nightly import nightly_flow
from flows.pipeline import PipelineConfig, pipeline_flow


def schema(flow: Any) -> dict[str, Any]:
    return parameter_schema(flow).model_dump_for_openapi()


GOOD = {"corpus": "sample", "sources": ["docs/"], "model": "/models/ac", "root": "s3://bucket/lloco"}


def test_pipeline_form_has_stages_and_options_with_defaults() -> None:
    config = PipelineConfig(**GOOD)
    assert config.stages.model_dump() == {"ingest": True, "train_compressor": False, "compress": True, "finetune": True, "evaluate": True}
    assert config.finetune.lora_r == 8 and config.finetune.learning_rate == 2e-5  # paper defaults
    assert config.scale.task_runner == "threads"
    assert is_valid({"config": GOOD}, schema(pipeline_flow))


@pytest.mark.parametrize(
    "bad",
    [{"corpus": "../escape"}, {"corpus": "a/b"}, {"model": None}, {"compress": {"shard_size": 0}}, {"compress": {"device": "tpu"}},
     {"finetune": {"zero_stage": 4}}, {"evaluate": {"systems": ["oracle"]}}, {"scale": {"task_runner": "ray"}}, {"stages": {"compress": "yes"}},
     {"compressor": {"zero_stage": 3}}, {"compressor": {"max_steps": 0}}, {"compressor": {"tuning": "qlora"}}],
)
def test_pipeline_form_refuses_bad_values_server_side(bad: dict[str, Any]) -> None:
    config = {k: v for k, v in (GOOD | bad).items() if v is not None}
    assert not is_valid({"config": config}, schema(pipeline_flow))


def test_backfill_children_get_a_valid_pipeline_form() -> None:
    config = BackfillConfig(collections=[{"name": "alpha", "source": "s3://raw/alpha/"}], model="/models/ac", root="/data")
    params = child_parameters(config, config.collections[0])
    assert is_valid(params, schema(pipeline_flow))
    assert params["config"]["stages"] == {"ingest": True, "train_compressor": False, "compress": True, "finetune": False, "evaluate": False}
    assert not is_valid({"config": {"collections": [], "model": "m"}}, schema(backfill_flow))  # at least one collection
    assert not is_valid({"config": {"collections": [{"name": "../x", "source": "s"}], "model": "m"}}, schema(backfill_flow))


def test_nightly_form_defaults_to_no_corpora() -> None:
    assert is_valid({"config": {"corpora": []}}, schema(nightly_flow))
    assert is_valid({"config": {"corpora": [GOOD]}}, schema(nightly_flow))


def test_pipeline_form_has_a_train_compressor_stage() -> None:
    config = PipelineConfig(**GOOD, stages={"train_compressor": True}, compressor={"qa": "qa.jsonl", "summary_length": 4, "max_steps": 10})
    assert config.stages.train_compressor and config.compressor.max_steps == 10 and config.compressor.tuning == "full"
    assert is_valid({"config": config.model_dump(mode="json")}, schema(pipeline_flow))
    from flows.train_compressor import train_compressor_flow

    assert is_valid({"config": {"corpus": "c", "base": "/models/llama", "qa": "qa.jsonl"}}, schema(train_compressor_flow))
    assert not is_valid({"config": {"corpus": "c", "base": "/models/llama", "lm_weight": -1}}, schema(train_compressor_flow))
