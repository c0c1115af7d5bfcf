"""Prefect results that lloco persists under `<root>/_prefect/results`: strict JSON, nothing that runs.

A Prefect result record names its own serializer, and Prefect decodes a record with the serializer
the record names, even when only checking that a cache record exists. So a record planted in the
bucket that names "pickle" would be unpickled (and run) on the next cache lookup, and Prefect's
own "json" serializer imports and instantiates any class a record names (`__class__`,
`__exc_type__`, and the record may even name its own `jsonlib` and `object_decoder`). Two parts:

- `StrictJSONSerializer` ("lloco-json"): plain JSON, plus the few lloco result types named in
  `RESULT_TYPES`, rebuilt through pydantic validation. Nothing else can come out of it.
- `ResultsLocalFileSystem` / `ResultsRemoteFileSystem`: the result storage blocks. Every byte Prefect
  reads from them passes `check_record` first: a JSON record whose serializer is exactly
  {"type": "lloco-json"}. Anything else is refused by name (a StoreError) before Prefect parses it:
  a cache lookup then treats the record as absent and the task runs again, overwriting it.
"""

from __future__ import annotations

import json
import logging
from typing import Any, ClassVar

from prefect._internal.compatibility.async_dispatch import async_dispatch
from prefect.filesystems import LocalFileSystem, RemoteFileSystem
from prefect.serializers import Serializer
from pydantic import Field, TypeAdapter

from lloco_core.errors import StoreError
from lloco_core.model.compress import CompressPlan, EncoderSettings, ShardPlan, ShardResult
from lloco_core.store.documents import DocumentRef

SERIALIZER_TYPE = "lloco-json"
TAG = "__lloco_type__"
RESULT_TYPES: dict[str, type] = {cls.__name__: cls for cls in (EncoderSettings, CompressPlan, ShardPlan, ShardResult, DocumentRef)}
_ADAPTERS = {name: TypeAdapter(cls) for name, cls in RESULT_TYPES.items()}
log = logging.getLogger("lloco.results")


def to_json(value: Any, path: str = "result") -> Any:
    """Plain JSON values; a RESULT_TYPES instance becomes {TAG: name, "data": ...}; anything else is a TypeError."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [to_json(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        if TAG in value or not all(isinstance(k, str) for k in value):
            raise TypeError(f"cannot persist {path}: a result dict needs string keys other than {TAG!r}")
        return {k: to_json(v, f"{path}[{k!r}]") for k, v in value.items()}
    name = type(value).__name__
    if RESULT_TYPES.get(name) is type(value):
        return {TAG: name, "data": _ADAPTERS[name].dump_python(value, mode="json")}
    raise TypeError(f"cannot persist {path} of type {type(value).__qualname__}: return plain JSON or one of {sorted(RESULT_TYPES)}")


def _from_json(obj: dict[str, Any]) -> Any:
    if TAG not in obj:
        return obj
    name = obj[TAG]
    if set(obj) != {TAG, "data"} or name not in RESULT_TYPES:
        raise ValueError(f"result names type {name!r}, which lloco does not persist")
    return _ADAPTERS[name].validate_python(obj["data"])


class StrictJSONSerializer(Serializer):
    """Plain JSON and lloco's own result types; decoding never imports or calls anything it reads."""

    type: str = Field(default=SERIALIZER_TYPE, frozen=True)

    def dumps(self, obj: Any) -> bytes:
        return json.dumps(to_json(obj), separators=(",", ":")).encode()

    def loads(self, blob: bytes) -> Any:
        return json.loads(blob, object_hook=_from_json)


def check_record(content: bytes, where: str) -> bytes:
    """`content` unchanged if lloco could have written it; else a StoreError naming `where`.

    Only JSON is parsed here (json.loads runs no code). Task results are records that name their
    serializer: it must be exactly lloco's, with no settings of its own. Flow results are the bare
    serializer output (their metadata lives in the Prefect server), which Prefect can only decode
    with the storage's own serializer; a file shaped like a record in their place is held to the
    record rule, since Prefect would trust the serializer it names.
    """
    try:
        record = json.loads(content)
    except (ValueError, RecursionError):
        raise StoreError(f"{where}: refusing a Prefect result that is not JSON (a pickle or other bytes)") from None
    if not isinstance(record, dict) or not {"metadata", "serializer"} & record.keys():
        return content  # a bare flow result
    metadata = record.get("metadata")
    serializer = metadata.get("serializer") if isinstance(metadata, dict) else record.get("serializer")
    if serializer != {"type": SERIALIZER_TYPE} or not isinstance(record.get("result"), str) or set(record) != {"metadata", "result"}:
        named = serializer.get("type") if isinstance(serializer, dict) else serializer
        raise StoreError(f"{where}: refusing a Prefect result record with serializer {named!r}: lloco writes and reads only {SERIALIZER_TYPE!r}")
    return content


def _checked(block: Any, path: str, content: bytes) -> bytes:
    try:
        return check_record(content, str(block._resolve_path(path)))
    except StoreError as err:
        log.warning("%s", err)
        raise


class _ChecksRecords:
    """Result storage whose every read passes `check_record` (Prefect reads only through read_path)."""

    async def aread_path(self, path: str) -> bytes:
        return _checked(self, path, await super().aread_path(path))  # type: ignore[misc]

    @async_dispatch(aread_path)
    def read_path(self, path: str) -> bytes:
        return _checked(self, path, super().read_path(path, _sync=True))  # type: ignore[misc]


class ResultsLocalFileSystem(_ChecksRecords, LocalFileSystem):
    """A local folder of lloco result records."""

    _block_type_name: ClassVar[str] = "lloco results (local folder)"


class ResultsRemoteFileSystem(_ChecksRecords, RemoteFileSystem):
    """An fsspec URL (s3://...) of lloco result records."""

    _block_type_name: ClassVar[str] = "lloco results (remote)"
