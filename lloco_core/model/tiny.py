"""Build a tiny AutoCompressor checkpoint in the published on-disk formats.

No weights can come from a hub here, so tests and the demo build a random-init LLaMA from a config,
train a small byte-level BPE tokenizer on the fly (or ship a real SentencePiece `tokenizer.model`),
and save both with `save_pretrained` (safetensors, `embed_summary.weight` at the root).
`resave_checkpoint` rewrites one in each layout real checkpoints use, and `populate_hub_cache`
files it in a local hub cache as a download would, so the real loading code reads them exactly as
it reads AutoCompressor-Llama-2-7b-6k.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from lloco_core.model.autocompressor import LlamaAutoCompressorModel, load_tokenizer
from lloco_core.model.checkpoint import BIN_INDEX, SAFETENSORS_INDEX, find_weight_files

Layout = Literal["safetensors", "sharded-safetensors", "bin", "sharded-bin"]
LAYOUT_FILES = {"safetensors": ("model{suffix}.safetensors", SAFETENSORS_INDEX), "bin": ("pytorch_model{suffix}.bin", BIN_INDEX)}
# LLaMA-2's tokenizer_config.json, the fields that matter when only tokenizer.model ships
SENTENCEPIECE_TOKENIZER_CONFIG = {
    "tokenizer_class": "LlamaTokenizer",
    "bos_token": "<s>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
    "add_bos_token": True,
    "add_eos_token": False,
    "legacy": False,
}

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>"]


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2000) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with LLaMA's special tokens (unk, BOS <s>, EOS </s>) and offsets."""
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>", add_bos_token=True
    )


def default_training_text() -> list[str]:
    """The bundled sample corpus plus the QA sets: enough text for a few thousand merges."""
    here = Path(__file__).resolve().parent.parent / "data"
    return [p.read_text(encoding="utf-8") for p in sorted(here.rglob("*")) if p.suffix in {".txt", ".md", ".jsonl"}] or ["lloco"]


def sentencepiece_tokenizer(out: Path, tokenizer_model: str | Path) -> PreTrainedTokenizerBase:
    """Ship a SentencePiece `tokenizer.model` as LLaMA checkpoints do (no tokenizer.json) and load it."""
    shutil.copyfile(tokenizer_model, out / "tokenizer.model")
    (out / "tokenizer_config.json").write_text(json.dumps(SENTENCEPIECE_TOKENIZER_CONFIG, indent=2))
    return load_tokenizer(str(out))


def tiny_llama_config(
    tokenizer: PreTrainedTokenizerBase, hidden_size: int, num_layers: int, num_heads: int, intermediate_size: int | None, max_position_embeddings: int
) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or 4 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )


def build_tiny_llama(
    out_dir: str | Path,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int | None = None,
    vocab_size: int = 2000,
    max_position_embeddings: int = 4096,
    texts: Iterable[str] | None = None,
    seed: int = 0,
) -> Path:
    """A plain random-init LLaMA causal LM (no summary tokens): the kind of base model
    `train_compressor` turns into an AutoCompressor. Same files as a hub LLaMA checkpoint."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(texts if texts is not None else default_training_text(), vocab_size)
    config = tiny_llama_config(tokenizer, hidden_size, num_layers, num_heads, intermediate_size, max_position_embeddings)
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def build_tiny_compressor(
    out_dir: str | Path,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int | None = None,
    summary_length: int = 4,
    segment_length: int = 32,
    vocab_size: int = 2000,
    max_position_embeddings: int = 4096,
    accumulate_summary: bool = True,
    texts: Iterable[str] | None = None,
    seed: int = 0,
    tokenizer_model: str | Path | None = None,
) -> Path:
    """Write config.json, model.safetensors and tokenizer files to `out_dir`; return it.
    `tokenizer_model`: a SentencePiece model to ship instead of training a BPE tokenizer."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if tokenizer_model is not None:
        tokenizer = sentencepiece_tokenizer(out, tokenizer_model)
    else:
        tokenizer = train_tokenizer(texts if texts is not None else default_training_text(), vocab_size)
    config = tiny_llama_config(tokenizer, hidden_size, num_layers, num_heads, intermediate_size, max_position_embeddings)
    config.architectures = ["LlamaAutoCompressorModel"]
    config.summary_length = summary_length
    config.accumulate_summary = accumulate_summary
    config.segment_length = segment_length
    torch.manual_seed(seed)
    model = LlamaAutoCompressorModel(config)
    model.save_pretrained(out, safe_serialization=True)
    if tokenizer_model is None:
        tokenizer.save_pretrained(out)
    return out


def rotary_inv_freq(config: LlamaConfig) -> torch.Tensor:
    """The per-layer rotary buffer checkpoints saved by transformers < 4.31 carry."""
    dim = config.hidden_size // config.num_attention_heads
    return 1.0 / (float(config.rope_parameters["rope_theta"]) ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))


def resave_checkpoint(
    src: str | Path, out: str | Path, layout: Layout, *, shards: int = 2, dtype: torch.dtype | None = None, rotary_buffers: bool = False
) -> Path:
    """Rewrite a safetensors checkpoint in a published layout, tensor names unchanged: one
    `model.safetensors` or `pytorch_model.bin`, or `shards` files split, named and indexed as
    transformers names them (`pytorch_model-00001-of-00002.bin` + `pytorch_model.bin.index.json`,
    the layout of AutoCompressor-Llama-2-7b-6k). `dtype` casts (the published one is bf16);
    `rotary_buffers` adds the per-layer `rotary_emb.inv_freq` tensors of older LLaMA checkpoints."""
    from huggingface_hub import split_torch_state_dict_into_shards
    from safetensors.torch import load_file, save_file

    src, out = Path(src), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    weights = find_weight_files(src)
    for path in src.iterdir():
        if path.is_file() and path not in weights.files:
            shutil.copy2(path, out / path.name)
    state: dict[str, torch.Tensor] = {}
    for shard in weights.shards:
        state.update(load_file(shard))
    if dtype is not None:
        state = {name: tensor.to(dtype) for name, tensor in state.items()}
    if rotary_buffers:
        config = LlamaConfig.from_pretrained(src)
        state.update({f"model.layers.{i}.self_attn.rotary_emb.inv_freq": rotary_inv_freq(config) for i in range(config.num_hidden_layers)})
    fmt = "bin" if layout.endswith("bin") else "safetensors"
    pattern, index_name = LAYOUT_FILES[fmt]
    total = sum(t.numel() * t.element_size() for t in state.values())
    size = -(-total // shards) if layout.startswith("sharded") else total
    split = split_torch_state_dict_into_shards(state, filename_pattern=pattern, max_shard_size=size)
    while len(split.filename_to_tensors) > shards:  # the splitter packs greedily: widen until `shards` files
        size += max(1, total // 100)
        split = split_torch_state_dict_into_shards(state, filename_pattern=pattern, max_shard_size=size)
    for filename, names in split.filename_to_tensors.items():
        tensors = OrderedDict((name, state[name].contiguous()) for name in names)
        if fmt == "bin":
            torch.save(tensors, out / filename)
        else:
            save_file(tensors, out / filename, metadata={"format": "pt"})
    if split.is_sharded:
        (out / index_name).write_text(json.dumps({"metadata": split.metadata, "weight_map": split.tensor_to_filename}, indent=2))
    return out


def populate_hub_cache(src: str | Path, cache_dir: str | Path, repo_id: str) -> Path:
    """File a checkpoint folder in a hub cache as `snapshot_download` leaves it (content-named
    blobs, a snapshot of symlinks, refs/main); return the snapshot folder."""
    files = sorted(p for p in Path(src).iterdir() if p.is_file())
    digests = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    commit = hashlib.sha1(json.dumps(digests, sort_keys=True).encode()).hexdigest()
    repo = Path(cache_dir) / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    for path in files:
        blob = repo / "blobs" / digests[path.name]
        shutil.copyfile(path, blob)
        (snapshot / path.name).symlink_to(os.path.relpath(blob, snapshot))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot
