"""A fast tokenizer (with offsets) that encodes exactly as SentencePiece does, for LLaMA checkpoints
that ship only a SentencePiece `tokenizer.model`.

Why not `AutoTokenizer`: transformers 5.24 converts such a folder into a tokenizer that differs from
SentencePiece on repeated and leading spaces ("a  b" gives '▁a','▁▁','b' where SentencePiece, and
the LLaMA tokenizer.json files converted by transformers 4.x, give '▁a','▁','▁b'): on random text
half the strings came out different. A model trained on SentencePiece ids must be fed the same ids,
so the tokenizer is built with transformers' SentencePiece-faithful builder
(`SpmConverter.build_tokenizer_from_spm_proto`: SentencePiece's normalizer, merges ranked by
piece score, byte fallback), and tests/test_loading.py checks it against SentencePiece itself.
"""

from __future__ import annotations

from pathlib import Path

from transformers import PreTrainedTokenizerFast
from transformers.convert_slow_tokenizer import SpmConverter, import_protobuf


def fast_tokenizer_from_sentencepiece(model_file: str | Path) -> PreTrainedTokenizerFast:
    """A `PreTrainedTokenizerFast` for a SentencePiece BPE model: BOS added with special tokens
    (as LLaMA's tokenizer does), unk/BOS/EOS taken from the model's own trainer spec."""
    proto = import_protobuf().ModelProto()
    proto.ParseFromString(Path(model_file).read_bytes())
    if proto.trainer_spec.model_type != proto.trainer_spec.BPE:
        raise ValueError(f"{model_file} is not a SentencePiece BPE model (LLaMA's kind)")
    vocab = {piece.piece: index for index, piece in enumerate(proto.pieces)}
    backend = SpmConverter.build_tokenizer_from_spm_proto(proto, vocab, legacy=True)
    spec = proto.trainer_spec

    def piece(index: int) -> str | None:
        return proto.pieces[index].piece if 0 <= index < len(proto.pieces) else None

    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token=piece(spec.unk_id),
        bos_token=piece(spec.bos_id),
        eos_token=piece(spec.eos_id),
        pad_token=piece(spec.pad_id),
        add_bos_token=True,
        add_eos_token=False,
    )
