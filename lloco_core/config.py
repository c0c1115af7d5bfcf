"""Typed configuration shared by the CLI, the Python API and Prefect flow parameters.

Every field carries a description so `lloco --help` and the Prefect UI form document themselves,
and validation refuses bad values before any work starts.
"""

from __future__ import annotations

import os
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
DEFAULT_LOCAL_ROOT = "./lloco_data"


def default_root() -> str:
    """`$LLOCO_ROOT`, else a local folder: where every corpus lives unless told otherwise."""
    return os.environ.get("LLOCO_ROOT") or DEFAULT_LOCAL_ROOT


def check_name(value: str, what: str) -> str:
    """A corpus or key name must be one plain path segment, so it can never leave its prefix."""
    if not NAME_PATTERN.match(value) or value in {".", ".."} or ".." in value:
        raise ValueError(
            f"{what} {value!r} is not allowed: use letters, digits, '.', '_' or '-' "
            "(at most 128 characters, starting with a letter or digit)"
        )
    return value


class StoreConfig(BaseModel):
    """Where the corpus store lives: a local folder, file:// URL or s3://bucket/prefix."""

    model_config = ConfigDict(extra="forbid")

    root: str = Field(default_factory=default_root, description="Store root URL: a folder, file://… or s3://bucket/prefix. Defaults to $LLOCO_ROOT, else ./lloco_data.")
    endpoint_url: str | None = Field(default=None, description="S3 endpoint (e.g. http://127.0.0.1:8333); defaults to $AWS_ENDPOINT_URL. Keys come from $AWS_ACCESS_KEY_ID / $AWS_SECRET_ACCESS_KEY.")


class CorpusConfig(StoreConfig):
    corpus: str = Field(description="Corpus name: one path segment of letters, digits, '.', '_' or '-'.")

    @field_validator("corpus")
    @classmethod
    def _corpus_is_a_name(cls, value: str) -> str:
        return check_name(value, "corpus")


class IngestConfig(CorpusConfig):
    source: str = Field(description="A folder of .txt/.md, a .jsonl or .parquet file, or any fsspec URL (s3://…).")


Device = Literal["auto", "cpu", "cuda"]
StoredDtype = Literal["auto", "float32", "float16", "bfloat16"]


class CompressConfig(CorpusConfig):
    model: str = Field(description="AutoCompressor checkpoint: a local folder or a hub id (already in the local cache).")
    segment_length: int | None = Field(default=None, ge=8, le=32768, description="Tokens per segment; default: the checkpoint's `segment_length` if it names one, else 1536.")
    shard_size: int = Field(default=64, ge=1, le=100_000, description="Documents per shard: the unit of commit, retry and resume.")
    batch_size: int = Field(default=8, ge=1, le=4096, description="At most this many documents encoded together in one forward pass.")
    batch_positions: int | None = Field(default=None, ge=256, le=1 << 22, description="At most this many input positions per forward pass; default 4096 on CPU (larger batches thrash its caches), 65536 on GPU.")
    device: Device = Field(default="auto", description="auto picks CUDA when present.")
    stored_dtype: StoredDtype = Field(default="auto", description="Dtype of stored summaries; auto = the compute dtype (float32 on CPU, bfloat16 on GPU).")
    revision: str | None = Field(default=None, description="Hub revision of the model, when it is a hub id.")


DURATION_PATTERN = r"^\s*\d+(\.\d+)?\s*[smhd]?\s*$"


class VerifyConfig(CorpusConfig):
    repair: bool = Field(default=False, description="Quarantine what is bad and record it (a tombstone), so the next compress, ingest or finetune restores it; an intact shard whose record is bad is committed again.")


class VacuumConfig(CorpusConfig):
    older_than: str = Field(default="1h", pattern=DURATION_PATTERN, description="Grace period: only files older than this are removed (90s, 30m, 1h, 2d); younger ones may belong to a write in flight.")
    dry_run: bool = Field(default=False, description="List what would be removed; remove nothing.")
