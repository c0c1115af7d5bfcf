"""The forms of the lloco deployments, checked with the validator the Prefect server runs
(enforce_parameter_schema), without a server: defaults render, optional fields are plain inputs
(no None toggles), bad values are refused, backfill passes pipeline's stage options on."""

from __future__ import annotations

from typing import Any

import pytest
from prefect.utilities.callables import parameter_schema
from prefect.utilities.schema_tools.validation import is_valid

from flows.backfill import BackfillConfig, backfill_flow, child_parameters
from flows.nightly import nightly_flow
from flows.pipeline import PipelineConfig, pipeline_flow
from lloco_core.qa.config import ALL_SYSTEMS


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


def definitions(flow: Any) -> dict[str, dict[str, Any]]:
    return schema(flow)["definitions"]


@pytest.mark.parametrize("flow", [pipeline_flow, backfill_flow, nightly_flow], ids=["pipeline", "backfill", "nightly"])
def test_forms_have_no_none_toggles(flow: Any) -> None:
    """`X | None` fields rendered as a `str | None` toggle reading "Property is type None"; they
    are plain optional inputs now (not required, no null default)."""
    for model, definition in definitions(flow).items():
        for name, prop in definition.get("properties", {}).items():
            assert {"type": "null"} not in prop.get("anyOf", []), f"{model}.{name} renders as a None toggle"
            assert prop.get("default", "absent") is not None, f"{model}.{name} shows a null default"


def test_list_defaults_show_in_the_form() -> None:
    assert definitions(pipeline_flow)["EvaluateOptions"]["properties"]["systems"]["default"] == list(ALL_SYSTEMS)
    assert definitions(pipeline_flow)["PipelineConfig"]["properties"]["sources"]["default"] == []


def test_empty_optional_inputs_are_accepted_as_the_ui_sends_them() -> None:
    """The UI omits an empty optional input or sends null; both pass the server's validator and
    the flow's model, which fills in None."""
    sent = GOOD | {"endpoint_url": None, "compress": {"segment_length": None}, "finetune": {"qa": None, "max_steps": None}}
    assert is_valid({"config": sent}, schema(pipeline_flow))
    config = PipelineConfig(**sent)
    assert config.endpoint_url is None and config.compress.segment_length is None and config.finetune.qa is None
    assert not is_valid({"config": GOOD | {"endpoint_url": 5}}, schema(pipeline_flow))
    assert not is_valid({"config": GOOD | {"compress": {"segment_length": 4}}}, schema(pipeline_flow))


def test_backfill_takes_the_pipeline_stage_options() -> None:
    config = BackfillConfig(
        collections=[{"name": "a", "source": "s3://raw/a/", "qa": "a-qa.jsonl"}, {"name": "b", "source": "s3://raw/b/"}], model="/models/ac",
        stages={"finetune": True, "evaluate": True}, finetune={"qa": "shared-qa.jsonl", "epochs": 1, "lora_r": 4}, evaluate={"limit": 5, "systems": ["lloco"]},
    )
    a, b = (child_parameters(config, c)["config"] for c in config.collections)
    for child in (a, b):
        assert is_valid({"config": child}, schema(pipeline_flow))
        assert child["stages"] == {"ingest": True, "train_compressor": False, "compress": True, "finetune": True, "evaluate": True}
        assert child["finetune"]["epochs"] == 1 and child["finetune"]["lora_r"] == 4
        assert child["evaluate"]["limit"] == 5 and child["evaluate"]["systems"] == ["lloco"]
    assert a["finetune"]["qa"] == "a-qa.jsonl" and b["finetune"]["qa"] == "shared-qa.jsonl"
    backfill = definitions(backfill_flow)
    assert {"stages", "compress", "finetune", "evaluate", "scale"} <= set(backfill["BackfillConfig"]["properties"])
    assert backfill["BackfillStages"]["properties"]["finetune"]["default"] is False  # opt-in, as before
