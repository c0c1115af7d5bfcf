"""Shared test helpers: a compressed corpus and a real PEFT LoRA adapter in the store layout."""

from __future__ import annotations

from pathlib import Path

import torch

from lloco_core.config import CompressConfig, IngestConfig
from lloco_core.model.compress import compress
from lloco_core.qa.prompts import default_prompts
from lloco_core.store.documents import ingest
from lloco_core.store.storage import Store
from lloco_core.training.checkpoints import AdapterStore
from tests.conftest import make_text


def compressed_corpus(tmp_path: Path, model: Path, root: str, corpus: str = "c", docs: dict[str, str] | None = None) -> str:
    """Ingest and compress a few documents; returns the encoder key."""
    source = tmp_path / f"src-{corpus}"
    source.mkdir()
    for doc_id, text in (docs or {"alpha": make_text(1, 300), "beta": make_text(2, 120), "gamma": make_text(3, 60)}).items():
        (source / f"{doc_id}.txt").write_text(text)
    ingest(IngestConfig(root=root, corpus=corpus, source=str(source)))
    return compress(CompressConfig(root=root, corpus=corpus, model=str(model), device="cpu")).encoder_key


def save_adapter(model: Path, root: str, corpus: str = "c", key: str = "ad-test", seed: int = 0, encoder_key: str | None = None, publish: bool = True) -> str:
    """A LoRA adapter (r=8 on q/k/v/o, random non-zero B so it changes outputs), published as finetune does:
    PEFT files + prompts.json, then finetune.json and the commit record last."""
    from peft import LoraConfig, get_peft_model

    from lloco_core.model.autocompressor import LlamaAutoCompressorModel

    torch.manual_seed(seed)
    base = LlamaAutoCompressorModel.from_pretrained(str(model))
    lora = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], init_lora_weights=False)
    peft_model = get_peft_model(base, lora)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    store = Store(root)
    folder = store.path(corpus, "adapters", key)
    peft_model.save_pretrained(folder, safe_serialization=True)
    store.write_bytes(f"{folder}/prompts.json", default_prompts().to_json().encode())
    if publish:  # without the commit record the adapter is an unfinished run
        files = {name: store.read_bytes(f"{folder}/{name}") for name in ("adapter_config.json", "adapter_model.safetensors", "prompts.json")}
        AdapterStore(store, corpus, key).publish(files, {"corpus": corpus, "adapter_key": key, "encoder_key": encoder_key})
    return key


def corpus_with_adapter(tmp_path: Path, model: Path) -> tuple[str, str]:
    """Corpus `c` under `tmp_path/store`, compressed, with one published adapter: (root, encoder key)."""
    root = str(tmp_path / "store")
    encoder_key = compressed_corpus(tmp_path, model, root)
    save_adapter(model, root, encoder_key=encoder_key)
    return root, encoder_key
