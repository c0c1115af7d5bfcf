"""Find a corpus's finished LoRA adapters in the store: `<root>/<corpus>/adapters/<adapter-key>/`.

A finished adapter is one whose commit record `_commits/adapter.json` exists and validates (written
last by finetune's `AdapterStore.publish`), beside the standard PEFT files, `prompts.json` (the
templates it was trained with) and `finetune.json` (the run summary, which names the encoder key).
Training checkpoints below it are never picked. The base model is PEFT's `base_model_name_or_path`
unless the summary names one. Newest = latest commit time.

The record carries every file's size and sha256: an adapter whose files one listing shows missing
or resized is reported by name (`AdapterInfo.problem`) and never loaded; the bytes of the files that
are read are checked against their sha256 (here, and by the decoder when it loads the weights).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from lloco_core.errors import InputError, StoreError
from lloco_core.qa.prompts import PromptSet, default_prompts
from lloco_core.store.records import FileSum
from lloco_core.store.storage import Store
from lloco_core.training.checkpoints import AdapterStore, read_checked

REQUIRED_FILES = ("adapter_config.json", "adapter_model.safetensors")
PROMPTS_FILE = "prompts.json"


@dataclass(frozen=True)
class AdapterInfo:
    key: str
    uri: str  # folder or URL that `decoder.load_decoder` accepts
    base_model: str | None
    encoder_key: str | None
    prompts: PromptSet
    modified: float
    files: dict[str, FileSum] = field(default_factory=dict)  # checksums the decoder checks on load
    endpoint_url: str | None = None  # the store's S3 endpoint, for fetching the files
    problem: str | None = None  # why the adapter cannot be used (a missing or resized file)


def _first_str(record: dict[str, Any], *names: str) -> str | None:
    for name in names:
        value = record.get(name)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, dict):  # e.g. {"config": {"model": ...}}
            found = _first_str(value, *names)
            if found:
                return found
    return None


def _size_problem(store: Store, folder: str, sums: dict[str, FileSum]) -> str | None:
    sizes = {path.rsplit("/", 1)[-1]: size for path, size in store.list_sizes(folder).items()}
    for name in (*REQUIRED_FILES, *sums):
        if name not in sizes:
            return f"{store.uri(f'{folder}/{name}')}: committed adapter file is missing"
        if name in sums and sizes[name] != sums[name].size:
            return f"{store.uri(f'{folder}/{name}')}: {sizes[name]} bytes, its commit record says {sums[name].size} (truncated or replaced)"
    return None


def read_adapter(store: Store, corpus: str, key: str) -> AdapterInfo | None:
    """The adapter under `key` if it is finished, else None; a damaged one comes with `problem` set."""
    adapters = AdapterStore(store, corpus, key)
    folder = adapters.prefix
    record = adapters.record()
    if record is None:
        return None
    sums = record.sums()
    modified = float(record.committed_ns) / 1e9
    problem = _size_problem(store, folder, sums)
    if problem is not None:
        return AdapterInfo(key, store.uri(folder), None, None, default_prompts(), modified, sums, store.endpoint_url, problem)
    try:
        peft_config = json.loads(read_checked(store, f"{folder}/adapter_config.json", sums.get("adapter_config.json")))
        meta: dict[str, Any] = json.loads(read_checked(store, f"{folder}/finetune.json", sums.get("finetune.json"))) if store.exists(f"{folder}/finetune.json") else {}
        prompts_path = f"{folder}/{PROMPTS_FILE}"
        prompts = PromptSet.from_json(read_checked(store, prompts_path, sums.get(PROMPTS_FILE))) if store.exists(prompts_path) else default_prompts()
    except (StoreError, ValueError) as err:
        return AdapterInfo(key, store.uri(folder), None, None, default_prompts(), modified, sums, store.endpoint_url, str(err))
    return AdapterInfo(
        key=key,
        uri=store.uri(folder),
        base_model=_first_str(meta, "base_model", "model", "model_path") or peft_config.get("base_model_name_or_path"),
        encoder_key=meta.get("encoder_key") if isinstance(meta.get("encoder_key"), str) else None,
        prompts=prompts,
        modified=modified,
        files=sums,
        endpoint_url=store.endpoint_url,
    )


def list_adapters(store: Store, corpus: str, usable_only: bool = True) -> list[AdapterInfo]:
    """Finished adapters of a corpus, newest first (damaged ones only with `usable_only=False`)."""
    keys = [path.rsplit("/", 1)[-1] for path in store.list_dirs(store.path(corpus, "adapters"))]
    found = [info for key in keys if (info := read_adapter(store, corpus, key)) is not None]
    return sorted((a for a in found if a.problem is None or not usable_only), key=lambda a: (-a.modified, a.key))


def resolve_adapter(store: Store, corpus: str, key: str | None, required: bool = False) -> AdapterInfo | None:
    """The named adapter, else the newest finished one; None when there is none and none is required.

    A damaged adapter is never passed over for an older one: its problem is raised by name."""
    if key is not None:
        info = read_adapter(store, corpus, key)
        if info is None:
            have = [a.key for a in list_adapters(store, corpus)]
            raise InputError(f"corpus {corpus!r} has no finished adapter {key!r} (finished adapters: {have or 'none'}); run `lloco finetune` or pass --no-adapter")
    else:
        adapters = list_adapters(store, corpus, usable_only=False)
        info = adapters[0] if adapters else None
    if info is not None and info.problem is not None:
        raise StoreError(f"adapter {info.key!r} of corpus {corpus!r} cannot be used: {info.problem}")
    if info is None and required:
        raise InputError(f"corpus {corpus!r} has no finished adapter: run `lloco finetune` first, or pass --no-adapter")
    return info
