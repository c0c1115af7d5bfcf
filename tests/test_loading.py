"""Checkpoints load in every published layout, and incomplete ones are refused (issue 8 items 1-2,
issue 10's model loose ends).

The tiny checkpoint is re-saved in each layout real checkpoints use (model/tiny.py), and the real
`compress` runs on each: the vectors must equal those of the single-safetensors original. Broken
checkpoints go through the `lloco compress` entry point: exit 2, one line naming the tensor or
file, and a store that is byte-for-byte what it was.
"""

from __future__ import annotations

import importlib.util
import json
import pickle
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import torch
from safetensors.torch import load_file, save_file

from lloco_core.config import CompressConfig, IngestConfig
from lloco_core.errors import InputError
from lloco_core.fingerprint import checkpoint_files, checkpoint_fingerprint
from lloco_core.model.autocompressor import LlamaAutoCompressorModel, load_autocompressor, load_tokenizer
from lloco_core.model.checkpoint import download_patterns
from lloco_core.model.compress import compress, encoder_settings
from lloco_core.model.segments import segment_document
from lloco_core.model.tiny import build_tiny_compressor, populate_hub_cache, resave_checkpoint
from lloco_core.store.documents import ingest
from lloco_core.store.embeddings import EmbeddingStore
from lloco_core.store.storage import Store
from tests.conftest import make_text
from tests.fixtures_compress import env_clean, run_cli, snapshot, write_docs  # noqa: F401

pytestmark = pytest.mark.usefixtures("env_clean")
REPO_ID = "princeton-nlp/AutoCompressor-Llama-2-7b-6k"
# the file listing of that hub repository (no safetensors)
PUBLISHED_FILES = [
    ".gitattributes", "README.md", "config.json", "generation_config.json", "pytorch_model-00001-of-00002.bin",
    "pytorch_model-00002-of-00002.bin", "pytorch_model.bin.index.json", "special_tokens_map.json", "tokenizer.json",
    "tokenizer.model", "tokenizer_config.json",
]
DOCS = {f"d{i}": make_text(i, 25 + 45 * i) for i in range(3)}  # 1 to 4 segments of 32 tokens


@pytest.fixture(scope="module")
def corpus_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One ingested corpus; each checkpoint compresses it under its own encoder key."""
    tmp = tmp_path_factory.mktemp("loading")
    root = str(tmp / "store")
    ingest(IngestConfig(root=root, corpus="c", source=str(write_docs(tmp / "src", DOCS))))
    return root


def compress_with(root: str, model: Path | str) -> tuple[pa.Table, str]:
    """Compress the corpus with this checkpoint (a no-op when done before); its rows and key."""
    summary = compress(CompressConfig(root=root, corpus="c", model=str(model), device="cpu", batch_size=1))
    rows = EmbeddingStore(Store(root), "c", summary.encoder_key).read_all()
    return rows.replace_schema_metadata(None), summary.encoder_key


def variant(src: Path, out: Path, *, drop: tuple[str, ...] = (), rename: dict[str, str] | None = None, add: dict[str, torch.Tensor] | None = None, config: dict[str, Any] | None = None) -> Path:
    """A copy of a single-safetensors checkpoint with tensors dropped, renamed or added, or config.json edited."""
    shutil.copytree(src, out)
    if drop or rename or add:
        state = load_file(out / "model.safetensors")
        for name in drop:
            del state[name]
        for old, new in (rename or {}).items():
            state[new] = state.pop(old)
        state.update(add or {})
        save_file(state, out / "model.safetensors", metadata={"format": "pt"})
    if config:
        path = out / "config.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **config}))
    return out


def truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


# --- every published layout loads, and compresses to the same vectors ---------------------------


@pytest.mark.parametrize(
    ("layout", "files"),
    [
        ("sharded-bin", {"pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin", "pytorch_model.bin.index.json"}),
        ("bin", {"pytorch_model.bin"}),
        ("sharded-safetensors", {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json"}),
    ],
)
def test_every_published_layout_compresses_to_the_same_vectors(layout: str, files: set[str], tiny_model: Path, corpus_root: str, tmp_path: Path) -> None:
    want, original_key = compress_with(corpus_root, tiny_model)
    # the single .bin also carries the per-layer rotary buffers of checkpoints saved by older transformers
    folder = resave_checkpoint(tiny_model, tmp_path / layout, layout, rotary_buffers=layout == "bin")
    weight_files = {p.name for p in folder.iterdir() if p.suffix in {".bin", ".safetensors"} or p.name.endswith(".index.json")}
    assert weight_files == files
    got, key = compress_with(corpus_root, folder)
    assert got.num_rows == want.num_rows > len(DOCS)
    assert got.equals(want)  # same texts, spans and bit-identical summaries
    assert key != original_key  # the key hashes the files that loaded: these are other files
    assert files <= {p.name for p in checkpoint_files(folder)}


def test_hub_id_loads_from_the_local_hub_cache_in_the_published_layout(tiny_model: Path, corpus_root: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants as hub

    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    # as published: bf16 weights in two .bin shards + index, no safetensors
    bf16 = resave_checkpoint(tiny_model, tmp_path / "bf16", "safetensors", dtype=torch.bfloat16)
    snapshot_folder = populate_hub_cache(resave_checkpoint(bf16, tmp_path / "published", "sharded-bin"), cache, REPO_ID)
    assert not list(snapshot_folder.glob("*.safetensors"))

    want, _ = compress_with(corpus_root, bf16)
    got, hub_key = compress_with(corpus_root, REPO_ID)
    assert got.equals(want)
    assert hub_key == encoder_settings(CompressConfig(corpus="c", model=REPO_ID, device="cpu")).key

    # the hub repository moves to other weights: a new snapshot, and a new encoder key
    state = load_file(bf16 / "model.safetensors")
    state["embed_summary.weight"] = -state["embed_summary.weight"]
    save_file(state, bf16 / "model.safetensors", metadata={"format": "pt"})
    populate_hub_cache(resave_checkpoint(bf16, tmp_path / "published-v2", "sharded-bin"), cache, REPO_ID)
    assert encoder_settings(CompressConfig(corpus="c", model=REPO_ID, device="cpu")).key != hub_key


def test_hub_download_fetches_the_weight_files_that_exist() -> None:
    bin_patterns = download_patterns(PUBLISHED_FILES)
    assert "pytorch_model.bin.index.json" in bin_patterns and "pytorch_model-*.bin" in bin_patterns
    assert not any("safetensors" in p for p in bin_patterns)
    both = download_patterns([*PUBLISHED_FILES, "model.safetensors"])  # a repository with both: one layout only
    assert "model.safetensors" in both and not any(".bin" in p for p in both)


def test_encoder_key_hashes_only_the_weight_files_that_load(tiny_model: Path, tmp_path: Path) -> None:
    folder = shutil.copytree(tiny_model, tmp_path / "both")
    resave_checkpoint(tiny_model, folder, "bin")  # now model.safetensors and pytorch_model.bin side by side
    names = {p.name for p in checkpoint_files(folder)}
    assert "model.safetensors" in names and "pytorch_model.bin" not in names and "config.json" in names
    key = checkpoint_fingerprint(folder)
    (folder / "pytorch_model.bin").write_bytes(b"not loaded, not hashed")
    assert checkpoint_fingerprint(folder) == key
    variant(tiny_model, tmp_path / "other", add={"embed_summary.weight": torch.zeros(4, 64)})
    shutil.copyfile(tmp_path / "other" / "model.safetensors", folder / "model.safetensors")
    assert checkpoint_fingerprint(folder) != key


def test_tied_embeddings_may_omit_the_output_head(tiny_model: Path, tmp_path: Path) -> None:
    folder = variant(tiny_model, tmp_path / "tied", drop=("lm_head.weight",), config={"tie_word_embeddings": True})
    model = load_autocompressor(str(folder), dtype=torch.float32)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert torch.equal(model.embed_summary.weight, load_file(folder / "model.safetensors")["embed_summary.weight"])


# --- incomplete or inconsistent checkpoints are refused, the store untouched ---------------------


def _sharded_bin(src: Path, out: Path) -> Path:
    return resave_checkpoint(src, out, "sharded-bin")


def _index_points_outside(src: Path, out: Path) -> None:
    index = _sharded_bin(src, out) / "pytorch_model.bin.index.json"
    content = json.loads(index.read_text())
    content["weight_map"]["embed_summary.weight"] = "../pytorch_model-00001-of-00002.bin"
    index.write_text(json.dumps(content))


REFUSALS: dict[str, tuple[Any, list[str]]] = {
    "embed_summary missing": (lambda src, out: variant(src, out, drop=("embed_summary.weight",)), ["missing tensor 'embed_summary.weight'"]),
    "embed_summary renamed": (
        lambda src, out: variant(src, out, rename={"embed_summary.weight": "model.embed_summary.weight"}),
        ["missing tensor 'embed_summary.weight'", "'model.embed_summary.weight' holds"],
    ),
    "a layer short": (lambda src, out: variant(src, out, config={"num_hidden_layers": 3}), ["'model.layers.2.", "num_hidden_layers=3", "hold 2 layers"]),
    "untied head missing": (lambda src, out: variant(src, out, drop=("lm_head.weight",)), ["missing tensor 'lm_head.weight'"]),
    "unexpected tensor": (lambda src, out: variant(src, out, add={"model.extra.weight": torch.ones(3)}), ["unexpected tensor 'model.extra.weight'"]),
    "config/weight size mismatch": (lambda src, out: variant(src, out, config={"hidden_size": 128}), ["misshapen tensor", "[4, 64] in the checkpoint", "implies [4, 128]"]),
    "truncated safetensors": (lambda src, out: truncated(variant(src, out) / "model.safetensors"), ["model.safetensors is not a valid safetensors file"]),
    "truncated .bin shard": (lambda src, out: truncated(_sharded_bin(src, out) / "pytorch_model-00002-of-00002.bin"), ["pytorch_model-00002-of-00002.bin is not a readable PyTorch file"]),
    "shard missing": (lambda src, out: (_sharded_bin(src, out) / "pytorch_model-00001-of-00002.bin").unlink(), ["names the shard pytorch_model-00001-of-00002.bin, which is missing"]),
    "index names a file outside the folder": (_index_points_outside, ["names the shard '../pytorch_model-00001-of-00002.bin', which is not a file name beside it"]),
    "segment_length 0": (lambda src, out: variant(src, out, config={"segment_length": 0}), ["segment_length must be a positive integer or absent, not 0"]),
    "segment_length -5": (lambda src, out: variant(src, out, config={"segment_length": -5}), ["segment_length must be a positive integer or absent, not -5"]),
    "summary_length 0": (lambda src, out: variant(src, out, config={"summary_length": 0}), ["summary_length must be a positive integer, not 0"]),
    "heads do not divide hidden": (lambda src, out: variant(src, out, config={"num_attention_heads": 3, "num_key_value_heads": 3}), ["hidden_size 64 is not divisible by num_attention_heads 3"]),
    "not a LLaMA": (lambda src, out: variant(src, out, config={"model_type": "opt"}), ["model_type is 'opt'"]),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_broken_checkpoint_is_refused_in_one_line_and_the_store_is_unchanged(case: str, tiny_model: Path, corpus_root: str, tmp_path: Path) -> None:
    compress_with(corpus_root, tiny_model)  # the store already holds committed work that must survive
    make, expected = REFUSALS[case]
    folder = tmp_path / "model"
    make(tiny_model, folder)
    before = snapshot(corpus_root)
    rc, _, stderr, _ = run_cli("compress", "--corpus", "c", "--root", corpus_root, "--model", str(folder), "--device", "cpu")
    assert rc == 2, stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr, stderr
    for fragment in expected:
        assert fragment in stderr, stderr
    assert snapshot(corpus_root) == before


def test_a_hub_id_missing_from_the_offline_cache_is_one_line(corpus_root: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    before = snapshot(corpus_root)
    rc, _, stderr, _ = run_cli("compress", "--corpus", "c", "--root", corpus_root, "--model", REPO_ID, "--device", "cpu")
    assert rc == 2 and len(stderr.strip().splitlines()) == 1, stderr
    assert f"cannot find model '{REPO_ID}' (revision main) on the hub or in the local hub cache" in stderr
    assert snapshot(corpus_root) == before


def test_cli_process_reports_a_truncated_checkpoint_in_one_line(tiny_model: Path, corpus_root: str, tmp_path: Path) -> None:
    """The real `lloco` process: exit 2, exactly one stderr line (no traceback, no library noise)."""
    from tests.test_cli import lloco_command, subprocess_env

    folder = variant(tiny_model, tmp_path / "model")
    truncated(folder / "model.safetensors")
    before = snapshot(corpus_root)
    done = subprocess.run(
        [*lloco_command(), "compress", "--corpus", "c", "--root", corpus_root, "--model", str(folder), "--device", "cpu"],
        capture_output=True, text=True, env=subprocess_env(), timeout=120, check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [f"lloco compress: error: checkpoint file {folder / 'model.safetensors'} is not a valid safetensors file (truncated or corrupt?): Error while deserializing header: incomplete metadata, file not fully covered"]
    assert snapshot(corpus_root) == before


class Payload:
    """Unpickling this runs code: it creates `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (Path.touch, (self.marker,))


def test_a_bin_with_a_pickle_payload_never_runs(tiny_model: Path, corpus_root: str, tmp_path: Path) -> None:
    folder = _sharded_bin(tiny_model, tmp_path / "model")
    shard = folder / "pytorch_model-00002-of-00002.bin"
    marker = tmp_path / "payload-ran"
    state = torch.load(shard, weights_only=True)
    state[next(iter(state))] = Payload(marker)
    torch.save(state, shard)
    torch.load(shard, weights_only=False)  # the payload is live: full unpickling runs it
    assert marker.exists()
    marker.unlink()

    before = snapshot(corpus_root)
    rc, _, stderr, _ = run_cli("compress", "--corpus", "c", "--root", corpus_root, "--model", str(folder), "--device", "cpu")
    assert rc == 2 and "pytorch_model-00002-of-00002.bin holds objects other than tensors" in stderr, stderr
    assert not marker.exists()
    assert snapshot(corpus_root) == before
    with pytest.raises(InputError, match="refuses to unpickle"):
        load_autocompressor(str(folder), dtype=torch.float32)
    # transformers 5's own .bin reader (under our check) also unpickles with weights_only=True
    with pytest.raises(pickle.UnpicklingError):
        LlamaAutoCompressorModel.from_pretrained(folder, use_safetensors=False)
    assert not marker.exists()


# --- SentencePiece tokenizers: LLaMA checkpoints that ship only tokenizer.model ------------------


def llama_sentencepiece_model() -> Path:
    """A real 32,000-piece LLaMA-style SentencePiece model shipped by the mistral-common package (dev extra)."""
    spec = importlib.util.find_spec("mistral_common")
    assert spec is not None and spec.origin, "make env installs it: pip install --no-deps mistral-common"
    return Path(spec.origin).parent / "data" / "tokenizer.model.v1"


def test_sentencepiece_only_checkpoint_gets_a_fast_tokenizer_that_matches_sentencepiece(tmp_path: Path) -> None:
    import sentencepiece

    folder = build_tiny_compressor(tmp_path / "sp", hidden_size=32, num_heads=2, tokenizer_model=llama_sentencepiece_model())
    assert (folder / "tokenizer.model").is_file() and not (folder / "tokenizer.json").exists()
    tokenizer = load_tokenizer(str(folder))
    assert tokenizer.is_fast and len(tokenizer) == 32000
    assert tokenizer("Hi").input_ids[0] == tokenizer.bos_token_id == 1  # BOS only with special tokens, as LLaMA's
    reference = sentencepiece.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
    text = make_text(7, 300) + "\n\nSecond  paragraph:\t3.14, naïve café, 漢字.  "
    rng = random.Random(0)  # spaces, newlines, tabs and unicode in every arrangement
    samples = [text, " leading", "  two", "a  b", *("".join(rng.choice("ab c\n\t.é漢字  ") for _ in range(rng.randint(1, 40))) for _ in range(300))]
    assert [tokenizer(t, add_special_tokens=False).input_ids for t in samples] == [reference.encode(t) for t in samples]
    segments = segment_document(tokenizer, text, 32)
    assert "".join(s.text for s in segments) == text
    assert [i for s in segments for i in s.token_ids] == reference.encode(text)

    root = str(tmp_path / "store")
    ingest(IngestConfig(root=root, corpus="c", source=str(write_docs(tmp_path / "src", {"doc": text}))))
    summary = compress(CompressConfig(root=root, corpus="c", model=str(folder), device="cpu"))
    assert summary.segments_written == len(segments) and summary.tokens == len(reference.encode(text))
