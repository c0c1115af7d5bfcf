"""One root URL for everything a corpus owns, through fsspec (local folder or s3://).

Writes are atomic: a local file is written beside its target and renamed; an S3 object becomes
visible only when its upload completes. Every path is built from validated names, so a corpus or
key from a user can never leave its prefix.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import uuid
from collections.abc import Iterator
from typing import IO, Any

import fsspec

from lloco_core.config import StoreConfig

SEGMENT = re.compile(r"^[A-Za-z0-9_.=-]{1,200}$")


def storage_options_for(root: str, endpoint_url: str | None = None) -> dict[str, Any]:
    """fsspec options for a root: S3 endpoint from config or $AWS_ENDPOINT_URL; keys from the environment."""
    if root.startswith("s3://"):
        endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3")
        return {"endpoint_url": endpoint} if endpoint else {}
    return {}


class Store:
    """The store under one root URL: path building, atomic writes, listings that see fresh state."""

    def __init__(self, root: str, endpoint_url: str | None = None) -> None:
        if "://" not in root:
            root = os.path.abspath(os.path.expanduser(root))
        self.options = storage_options_for(root, endpoint_url)
        self.fs, self.root = fsspec.core.url_to_fs(root, **self.options)
        self.root = self.root.rstrip("/")
        self.protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        self.is_local = self.protocol in ("file", "local")
        if self.is_local:
            self.fs.makedirs(self.root, exist_ok=True)

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

    # reads -------------------------------------------------------------------------------------
    def exists(self, path: str) -> bool:
        self.fs.invalidate_cache(path)
        return self.fs.exists(path)

    def list(self, folder: str, suffix: str = "") -> list[str]:
        """Files directly in `folder` (fresh listing, never a stale cache), sorted; [] if absent."""
        self.fs.invalidate_cache(folder)
        try:
            entries = self.fs.ls(folder, detail=False)
        except FileNotFoundError:
            return []
        return sorted(p for p in entries if p.endswith(suffix) and not os.path.basename(p).startswith(".tmp-"))

    def read_json(self, path: str) -> Any:
        return json.loads(self.fs.cat_file(path))

    def read_json_many(self, paths: list[str]) -> list[Any]:
        """Fetch many small JSON files at once (s3fs fetches them concurrently)."""
        if not paths:
            return []
        blobs = self.fs.cat(paths)
        return [json.loads(blobs[p]) for p in paths]

    # writes ------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def open_atomic(self, path: str) -> Iterator[IO[bytes]]:
        """Write a file so that readers see all of it or nothing of it."""
        parent = path.rsplit("/", 1)[0]
        if not self.is_local:
            with self.fs.open(path, "wb") as f:  # an S3 object appears only once complete
                yield f
            return
        self.fs.makedirs(parent, exist_ok=True)
        tmp = f"{parent}/.tmp-{uuid.uuid4().hex}-{os.path.basename(path)}"
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
