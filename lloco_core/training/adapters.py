"""Find a corpus's finished LoRA adapters in the store: `<root>/<corpus>/adapters/<adapter-key>/`.

A finished adapter is one whose commit record `_commits/adapter.json` exists (written last by
finetune's `AdapterStore.publish`), beside the standard PEFT files, `prompts.json` (the templates it
was trained with) and `finetune.json` (the run summary, which names the encoder key). Training
checkpoints below it are never picked. The base model is PEFT's `base_model_name_or_path` unless
the summary names one. Newest = latest commit time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lloco_core.errors import InputError
from lloco_core.qa.prompts import PromptSet, default_prompts
from lloco_core.store.storage import Store
from lloco_core.training.checkpoints import FINISHED, AdapterStore

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


def read_adapter(store: Store, corpus: str, key: str) -> AdapterInfo | None:
    """The adapter under `key` if it is finished, else None."""
    adapters = AdapterStore(store, corpus, key)
    folder = adapters.prefix
    if not adapters.log.is_committed(FINISHED) or not all(store.exists(f"{folder}/{name}") for name in REQUIRED_FILES):
        return None
    record = store.read_json(adapters.log.record_path(FINISHED))
    peft_config = store.read_json(f"{folder}/adapter_config.json")
    meta: dict[str, Any] = store.read_json(f"{folder}/finetune.json") if store.exists(f"{folder}/finetune.json") else {}
    prompts = PromptSet.from_json(store.fs.cat_file(f"{folder}/{PROMPTS_FILE}")) if store.exists(f"{folder}/{PROMPTS_FILE}") else default_prompts()
    modified = float(record.get("committed_ns", 0)) / 1e9
    return AdapterInfo(
        key=key,
        uri=store.uri(folder),
        base_model=_first_str(meta, "base_model", "model", "model_path") or peft_config.get("base_model_name_or_path"),
        encoder_key=meta.get("encoder_key") if isinstance(meta.get("encoder_key"), str) else None,
        prompts=prompts,
        modified=modified,
    )


def list_adapters(store: Store, corpus: str) -> list[AdapterInfo]:
    """Finished adapters of a corpus, newest first."""
    base = store.path(corpus, "adapters")
    store.fs.invalidate_cache(base)
    try:
        entries = store.fs.ls(base, detail=True)
    except FileNotFoundError:
        return []
    keys = [e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries if e.get("type") == "directory"]
    found = [info for key in keys if (info := read_adapter(store, corpus, key)) is not None]
    return sorted(found, key=lambda a: (-a.modified, a.key))


def resolve_adapter(store: Store, corpus: str, key: str | None, required: bool = False) -> AdapterInfo | None:
    """The named adapter, else the newest finished one; None when there is none and none is required."""
    if key is not None:
        info = read_adapter(store, corpus, key)
        if info is None:
            have = [a.key for a in list_adapters(store, corpus)]
            raise InputError(f"corpus {corpus!r} has no finished adapter {key!r} (finished adapters: {have or 'none'}); run `lloco finetune` or pass --no-adapter")
        return info
    adapters = list_adapters(store, corpus)
    if adapters:
        return adapters[0]
    if required:
        raise InputError(f"corpus {corpus!r} has no finished adapter: run `lloco finetune` first, or pass --no-adapter")
    return None
