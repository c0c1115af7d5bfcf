"""Build a tiny AutoCompressor checkpoint in the published on-disk format.

No weights can come from a hub here, so tests and the demo build a random-init LLaMA from a config,
train a small byte-level BPE tokenizer on the fly, and save both with `save_pretrained`
(safetensors, `embed_summary.weight` at the root). The real loading code then reads them exactly as
it reads AutoCompressor-Llama-2-7b-6k.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from lloco_core.model.autocompressor import LlamaAutoCompressorModel

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


def tiny_llama_config(
    tokenizer: PreTrainedTokenizerFast, hidden_size: int, num_layers: int, num_heads: int, intermediate_size: int | None, max_position_embeddings: int
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
) -> Path:
    """Write config.json, model.safetensors and tokenizer files to `out_dir`; return it."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(texts if texts is not None else default_training_text(), vocab_size)
    config = tiny_llama_config(tokenizer, hidden_size, num_layers, num_heads, intermediate_size, max_position_embeddings)
    config.architectures = ["LlamaAutoCompressorModel"]
    config.summary_length = summary_length
    config.accumulate_summary = accumulate_summary
    config.segment_length = segment_length
    torch.manual_seed(seed)
    model = LlamaAutoCompressorModel(config)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out
