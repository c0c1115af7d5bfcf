"""How a flow runs, chosen per run from its parameters: result storage under the store root, a task
runner (threads or Dask), and the GPU concurrency slot.

Results live under `<root>/_prefect/results` (a name no corpus can take), so the cache records that
make a UI retry a no-op travel with the store: the same local folder or S3 prefix, whichever worker
runs the retry. They are strict JSON, in storage that refuses any other record before Prefect
decodes it (tasks/_results.py): a record planted in the bucket can never run code.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Literal

from prefect import Flow
from prefect.filesystems import WritableFileSystem
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from pydantic import BaseModel, ConfigDict, Field
from pydantic.fields import FieldInfo

from lloco_core.config import NAME_PATTERN, CompressConfig, StoreConfig
from lloco_core.fingerprint import stable_hash
from lloco_core.model.autocompressor import resolve_device
from lloco_core.store.storage import Store
from tasks._results import ResultsLocalFileSystem, ResultsRemoteFileSystem, StrictJSONSerializer

GPU_LIMIT = "gpu"
"""Global concurrency limit held by every GPU stage; `lloco serve` creates it with one slot per GPU."""

CORPUS_PATTERN = NAME_PATTERN.pattern
"""The corpus-name rule as a JSON-schema pattern, so the server itself rejects a bad name."""


def plain_optional_inputs(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """Shape a form model's JSON schema for the Prefect UI.

    - An optional field (`X | None`, default None) becomes a plain optional input of type X: the
      UI drew `anyOf [X, null]` as a `X | None` toggle reading "Property is type None". The
      server still accepts null or absence for it (Prefect's validator allows null in a field
      that is not required and has no default), and pydantic fills in None.
    - A list field with a default factory shows its default (pydantic leaves factories out of
      the schema, so `systems` read "No items selected" although the default is all five).
    """
    properties: dict[str, dict[str, Any]] = schema.get("properties", {})
    for name, prop in properties.items():
        options = prop.get("anyOf", [])
        plain = [o for o in options if o != {"type": "null"}]
        if len(options) == 2 and len(plain) == 1 and "$ref" not in plain[0]:
            del prop["anyOf"]
            prop.update(plain[0])
            if "default" in prop and prop["default"] is None:
                del prop["default"]
    for name, field in model.model_fields.items():
        if name in properties and field.default_factory is not None and "default" not in properties[name]:
            value = field.default_factory()  # type: ignore[call-arg]
            if isinstance(value, list) and all(isinstance(v, (str, int, float, bool)) for v in value):
                properties[name]["default"] = value


FORM = ConfigDict(extra="forbid", json_schema_extra=plain_optional_inputs)
"""model_config of every form model (the parameters a deployment's UI form renders)."""


def field_of(model: type[BaseModel], name: str) -> Any:
    """Reuse a field (type bounds, default, description) of a library config in a flow's form."""
    info: FieldInfo = model.model_fields[name]
    return FieldInfo.merge_field_infos(info)


class CompressOptions(BaseModel):
    """The compress settings a form shows; store, corpus and model come from the enclosing form."""

    model_config = FORM

    segment_length: int | None = field_of(CompressConfig, "segment_length")
    shard_size: int = field_of(CompressConfig, "shard_size")
    batch_size: int = field_of(CompressConfig, "batch_size")
    batch_positions: int | None = field_of(CompressConfig, "batch_positions")
    device: Literal["auto", "cpu", "cuda"] = field_of(CompressConfig, "device")
    stored_dtype: Literal["auto", "float32", "float16", "bfloat16"] = field_of(CompressConfig, "stored_dtype")

    def config(self, store: StoreConfig, corpus: str, model: str) -> CompressConfig:
        return CompressConfig(root=store.root, endpoint_url=store.endpoint_url, corpus=corpus, model=model, **self.model_dump())


class ScaleOptions(BaseModel):
    """Where shard tasks run: threads in the flow's process, or a Dask cluster (local or remote)."""

    model_config = FORM

    task_runner: Literal["threads", "dask"] = Field(default="threads", description="threads: one process (one GPU). dask: spread shard tasks over Dask workers.")
    dask_address: str | None = Field(default=None, description="Scheduler address (tcp://host:8786) of an existing Dask cluster; empty = start a local cluster for this run.")
    dask_workers: int = Field(default=2, ge=1, le=1024, description="Worker processes of the local Dask cluster (one per GPU on a GPU node).")


def result_storage(store: StoreConfig) -> WritableFileSystem:
    """Prefect result storage under the store root: a local folder, or any fsspec URL (S3).

    A flow's storage must be a saved block: it is saved under a name derived from the URL
    (endpoint only; keys stay in the worker's environment), so every run of that root shares it.
    The block reads only records that `tasks._results.check_record` accepts.
    """
    s = Store.from_config(store)
    base = s.uri(s.path("_prefect", "results"))
    block: WritableFileSystem = ResultsLocalFileSystem(basepath=base) if s.is_local else ResultsRemoteFileSystem(basepath=base, settings=dict(s.options))
    block.save("lloco-results-" + stable_hash({"base": base, **s.options}), overwrite=True)
    return block


def task_runner(scale: ScaleOptions) -> TaskRunner[Any]:
    """The runner for a stage's tasks; Dask is imported only when asked for."""
    if scale.task_runner == "dask":
        from prefect_dask import DaskTaskRunner

        if scale.dask_address:
            return DaskTaskRunner(address=scale.dask_address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": scale.dask_workers, "threads_per_worker": 1, "processes": True, "dashboard_address": None})
    return ThreadPoolTaskRunner()


def configured(flow: Flow[Any, Any], store: StoreConfig, scale: ScaleOptions | None = None) -> Flow[Any, Any]:
    """`flow` with results persisted under the root and the chosen task runner."""
    options: dict[str, Any] = {"result_storage": result_storage(store), "result_serializer": StrictJSONSerializer(), "persist_result": True}
    if scale is not None:
        options["task_runner"] = task_runner(scale)
    return flow.with_options(**options)


@contextlib.contextmanager
def gpu_slot(device: str) -> Iterator[None]:
    """Hold one slot of the `gpu` limit while a stage uses CUDA; a no-op on CPU.

    Not strict: without the limit (a plain script, no `lloco serve`) the stage runs unlimited.
    """
    if resolve_device(device).type != "cuda":
        yield
        return
    from prefect.concurrency.sync import concurrency

    with concurrency(GPU_LIMIT, occupy=1, strict=False):
        yield
