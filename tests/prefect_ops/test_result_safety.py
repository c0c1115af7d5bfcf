"""Prefect results under `<root>/_prefect/results` cannot run code: every record lloco persists is
strict JSON, and a record planted in their place (a cloudpickle record, or a Prefect "json" record
naming a class to import) is refused by name before Prefect decodes it. A re-run then ignores it
and recomputes from the store; the next run is a cache hit again."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from prefect import flow
from prefect._internal.result_records import ResultRecord
from prefect.results import ResultStore

from flows._runtime import configured, result_storage
from flows.compress import compress_flow
from flows.ingest import ingest_flow
from lloco_core.config import CompressConfig, IngestConfig, StoreConfig
from lloco_core.errors import StoreError
from lloco_core.model.compress import CompressPlan, encoder_settings, plan_compress
from lloco_core.store.storage import Store
from tasks._results import StrictJSONSerializer, check_record
from tasks.compress import compress_shard_task
from tests.conftest import make_text
from tests.s3server import SeaweedS3

from .conftest import Stack

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


class Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (f"open({str(self.marker)!r}, 'w').write('payload ran')",))


def pickle_record(marker: Path) -> bytes:
    """A record as Prefect's default serializer writes one, carrying a payload."""
    serializer = {"type": "pickle", "picklelib": "cloudpickle", "picklelib_version": None}
    result = base64.encodebytes(cloudpickle.dumps(Payload(marker))).decode()
    return json.dumps({"metadata": {"storage_key": None, "expiration": None, "serializer": serializer, "prefect_version": "3.9.1", "storage_block_id": None}, "result": result}).encode()


def class_record(module: str) -> bytes:
    """A Prefect "json" record naming a class: Prefect's decoder imports its module (and runs it)."""
    result = json.dumps({"__class__": f"{module}.Thing", "data": {}})
    return json.dumps({"metadata": {"serializer": {"type": "json"}, "prefect_version": "3.9.1"}, "result": result}).encode()


@flow(name="retry-shards")
def retry_shards(config: CompressConfig, plan: CompressPlan) -> list[dict[str, Any]]:
    """Every planned shard's task again, as a retried compress flow run submits them."""
    settings = encoder_settings(config)
    states = [compress_shard_task(config, settings, shard, return_state=True) for shard in plan.shards]
    return [{"state": s.name, "result": s.result()} for s in states]


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    server = SeaweedS3(tmp_path_factory.mktemp("weed")).start()
    try:
        yield server
    finally:
        server.stop()


def test_planted_result_records_never_run(prefect_api: Stack, tiny_model: Path, tmp_path: Path, root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "docs"
    source.mkdir()
    for i in range(3):
        (source / f"d{i}.txt").write_text(make_text(i, 120))
    store_config = StoreConfig(root=root)
    config = CompressConfig(root=root, corpus="c", model=str(tiny_model), shard_size=2, device="cpu")
    configured(ingest_flow, store_config)(IngestConfig(root=root, corpus="c", source=str(source)))
    plan = plan_compress(Store(root), "c", encoder_settings(config), config.shard_size)
    compressed = configured(compress_flow, store_config)(config)
    assert compressed["documents_compressed"] == 3 and len(plan.shards) == 2
    retry = configured(retry_shards, store_config)
    first = retry(config, plan)
    assert [r["state"] for r in first] == ["Cached", "Cached"]  # the compress flow's records

    store = Store(root)
    results = store.path("_prefect", "results")
    store.fs.invalidate_cache()
    records = sorted(store.fs.find(results))
    keys = [r.removeprefix(results + "/") for r in records]
    # 3 flow results (ingest, compress, retry), the ingest and plan task results, 2 shard cache records
    assert len(records) == 7 and sum(k.startswith("lloco/compress/c/") for k in keys) == 2, keys
    block = result_storage(store_config)
    reader = ResultStore(result_storage=block, serializer=StrictJSONSerializer(), cache_result_in_memory=False)
    decoded = []
    for path, key in zip(records, keys):  # everything lloco persisted is strict JSON, and reads back as plain values or lloco types
        check_record(store.fs.cat_file(path), path)
        decoded.append(reader.read(key).result)
    assert any(isinstance(v, list) and len(v) == 2 and isinstance(v[1], CompressPlan) and v[1] == plan for v in decoded)

    marker = tmp_path / "ran"
    monkeypatch.syspath_prepend(str(tmp_path))
    module = f"lloco_planted_{uuid.uuid4().hex}"  # fresh per run: Prefect caches the classes it imported
    (tmp_path / f"{module}.py").write_text(f"import pydantic\nopen({str(marker)!r}, 'w').write('imported')\nclass Thing(pydantic.BaseModel): pass\n")
    for planted in (pickle_record(marker), class_record(module)):
        ResultRecord.deserialize(planted)  # control: Prefect itself runs both
        assert marker.exists()
        marker.unlink()

    for planted in (pickle_record(marker), class_record(module)):
        for path in records:
            store.fs.pipe_file(path, planted)
        for key in keys:  # read as a cache lookup or a state's result would: refused by name
            assert not reader.exists(key)
            with pytest.raises(StoreError, match=key):
                reader.read(key)
        again = retry(config, plan)  # the planted cache records are ignored: the tasks run and check the store
        assert not marker.exists()
        assert [r["state"] for r in again] == ["Completed", "Completed"]
        assert [(r["result"]["name"], r["result"]["already_committed"]) for r in again] == [(s.name, True) for s in plan.shards]
        for path, key in zip(records, keys):
            if key.startswith("lloco/compress/"):  # the shard cache records were rewritten by lloco
                check_record(store.fs.cat_file(path), path)
    assert [r["state"] for r in retry(config, plan)] == ["Cached", "Cached"]
    assert not marker.exists()
