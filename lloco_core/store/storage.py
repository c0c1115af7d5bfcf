"""One root URL for everything a corpus owns, through fsspec (local folder or s3://).

Every filesystem lloco builds comes from `filesystem()` / `open_url()` here, so the store's options
(an S3 endpoint from `--endpoint-url`) apply to QA files, sources, eval sets, adapters and exports
alike: nothing is ever sent to a default endpoint the user did not name.

Writes are atomic: a local file is written beside its target and renamed; an S3 object becomes
visible only when its upload completes. Every path is built from validated names, so a corpus or
key from a user can never leave its prefix. Constructing a `Store` creates nothing: folders appear
only when something is written into them, so read-only commands leave no trace, and a mistyped
root fails (`require_root`) instead of being created.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import uuid
from collections.abc import Iterator
from typing import IO, Any

import fsspec

from lloco_core.config import StoreConfig
from lloco_core.errors import InputError
from lloco_core.store.records import SEGMENT

TMP_PREFIX = ".tmp-"


S3_CLIENT_CONFIG: dict[str, Any] = {"retries": {"max_attempts": 2, "mode": "standard"}, "connect_timeout": 10}
"""botocore's own retries kept short (measured: an unreachable endpoint took ~7.5 s per call with
its defaults, and those multiplied with lloco's retry policy, store/retry.py, to ~85 s before a
command gave up; now ~1.6 s per call): transient errors are retried by that one policy."""


def storage_options_for(url: str, endpoint_url: str | None = None) -> dict[str, Any]:
    """fsspec options for a URL: S3 endpoint from config or $AWS_ENDPOINT_URL; keys from the environment."""
    if url.startswith(("s3://", "s3a://")):
        endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3")
        options: dict[str, Any] = {"config_kwargs": S3_CLIENT_CONFIG}
        return {**options, "endpoint_url": endpoint} if endpoint else options
    return {}


def _local_or_url(url: str) -> str:
    return url if "://" in url else os.path.abspath(os.path.expanduser(url))


def filesystem(url: str, endpoint_url: str | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem and path for any URL or local path, with the store's options."""
    url = _local_or_url(url)
    try:
        return fsspec.core.url_to_fs(url, **storage_options_for(url, endpoint_url))
    except (ValueError, ImportError) as err:  # unknown protocol, e.g. a mistyped `foo://`
        raise InputError(f"cannot open {url!r}: {err}") from None


def open_url(url: str, mode: str = "rb", endpoint_url: str | None = None, **kwargs: Any) -> Any:
    """`fsspec.open` with the store's options (an S3 endpoint) for any URL or local path."""
    url = _local_or_url(url)
    try:
        return fsspec.open(url, mode, **storage_options_for(url, endpoint_url), **kwargs)
    except (ValueError, ImportError) as err:
        raise InputError(f"cannot open {url!r}: {err}") from None


def entry_mtime(entry: dict[str, Any]) -> float | None:
    """Modification time (epoch seconds) from an fsspec listing entry, local or S3."""
    for key in ("mtime", "LastModified", "last_modified", "created"):
        value = entry.get(key)
        if isinstance(value, datetime.datetime):
            return value.timestamp()
        if isinstance(value, (int, float)):
            return float(value)
    return None


class Store:
    """The store under one root URL: path building, atomic writes, listings that see fresh state."""

    def __init__(self, root: str, endpoint_url: str | None = None) -> None:
        root = _local_or_url(root)
        self.options = storage_options_for(root, endpoint_url)
        self.endpoint_url = endpoint_url
        self.fs, self.root = filesystem(root, endpoint_url)
        self.root = self.root.rstrip("/")
        self.protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        self.is_local = self.protocol in ("file", "local")

    @classmethod
    def from_config(cls, config: StoreConfig) -> Store:
        return cls(config.root, config.endpoint_url)

    # paths -------------------------------------------------------------------------------------
    def path(self, *names: str) -> str:
        """Join validated names under the root; each name is one plain segment."""
        for name in names:
            for part in name.split("/"):
                if not SEGMENT.match(part) or part in (".", ".."):
                    raise ValueError(f"path segment {part!r} in {name!r} is not allowed under the store root")
        return "/".join([self.root, *names])

    def uri(self, path: str) -> str:
        """A full URL for a store path, for summaries and logs."""
        return path if self.is_local else f"{self.protocol}://{path}"

    def require_root(self) -> None:
        """A read-only command's first check: the root must exist (a typo is an error, never created)."""
        if self.is_local and not os.path.isdir(self.root):
            raise InputError(f"store root {self.root!r} does not exist (check --root or $LLOCO_ROOT)")

    # reads -------------------------------------------------------------------------------------
    def exists(self, path: str) -> bool:
        self.fs.invalidate_cache(path)
        return self.fs.exists(path)

    def _entries(self, folder: str) -> list[dict[str, Any]]:
        self.fs.invalidate_cache(folder)
        try:
            return self.fs.ls(folder, detail=True)
        except FileNotFoundError:
            return []

    def list(self, folder: str, suffix: str = "") -> list[str]:
        """Files directly in `folder` (fresh listing, never a stale cache), sorted; [] if absent."""
        return sorted(name for name in self.list_sizes(folder) if name.endswith(suffix))

    def list_sizes(self, folder: str) -> dict[str, int]:
        """Full path -> size of the files directly in `folder` (one listing; temp files left out)."""
        return {
            e["name"]: int(e.get("size") or 0)
            for e in self._entries(folder)
            if e.get("type") != "directory" and not os.path.basename(e["name"]).startswith(TMP_PREFIX)
        }

    def list_dirs(self, folder: str) -> list[str]:
        """Sub-folders directly in `folder`, sorted full paths."""
        return sorted(e["name"].rstrip("/") for e in self._entries(folder) if e.get("type") == "directory")

    def list_detail(self, folder: str) -> list[dict[str, Any]]:
        """Every entry directly in `folder`, temp files included (for vacuum)."""
        return self._entries(folder)

    def read_bytes(self, path: str) -> bytes:
        return self.fs.cat_file(path)

    def read_json(self, path: str) -> Any:
        return json.loads(self.fs.cat_file(path))

    def read_many(self, paths: list[str]) -> dict[str, bytes | Exception]:
        """Fetch many small files at once (s3fs fetches them concurrently); a failure is returned, not raised."""
        if not paths:
            return {}
        return self.fs.cat(paths, on_error="return")

    # writes ------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def open_atomic(self, path: str) -> Iterator[IO[bytes]]:
        """Write a file so that readers see all of it or nothing of it; parents are made on demand."""
        parent = path.rsplit("/", 1)[0]
        if not self.is_local:
            with self.fs.open(path, "wb") as f:  # an S3 object appears only once complete
                yield f
            return
        self.fs.makedirs(parent, exist_ok=True)
        tmp = f"{parent}/{TMP_PREFIX}{uuid.uuid4().hex}-{os.path.basename(path)}"
        try:
            with open(tmp, "wb") as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    def write_bytes(self, path: str, data: bytes) -> None:
        with self.open_atomic(path) as f:
            f.write(data)

    def write_json(self, path: str, value: Any) -> None:
        self.write_bytes(path, json.dumps(value, indent=1, sort_keys=True).encode())

    def delete(self, path: str) -> None:
        """Remove one file; absent is fine."""
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(path)
        self.fs.invalidate_cache(path.rsplit("/", 1)[0])

    def move(self, source: str, target: str) -> None:
        """Move one file (a copy then a delete on S3); parents are made on demand."""
        if self.is_local:
            self.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
        self.fs.mv(source, target)
        self.fs.invalidate_cache(source.rsplit("/", 1)[0])
