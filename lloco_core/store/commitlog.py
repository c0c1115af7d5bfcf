"""Data files made visible by commit records written last (the store's only source of truth).

A writer puts a data file at a name derived from its content (a retry overwrites, never
duplicates), then writes a small JSON commit record. Readers list commit records only, so a crash
between the two leaves an orphan file nobody reads, and the store stays at its last commit.
"""

from __future__ import annotations

import time
from typing import Any

from lloco_core.store.storage import Store

COMMITS = "_commits"


class CommitLog:
    """Commit records under `<prefix>/_commits/<name>.json`, read in commit order."""

    def __init__(self, store: Store, prefix: str) -> None:
        self.store = store
        self.prefix = prefix

    def data_path(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def record_path(self, name: str) -> str:
        return f"{self.prefix}/{COMMITS}/{name}.json"

    def is_committed(self, name: str) -> bool:
        return self.store.exists(self.record_path(name))

    def commit(self, name: str, record: dict[str, Any]) -> dict[str, Any]:
        """Write the record last; `committed_ns` orders commits (later wins where they overlap)."""
        record = {"name": name, "committed_ns": time.time_ns(), **record}
        self.store.write_json(self.record_path(name), record)
        return record

    def records(self) -> list[dict[str, Any]]:
        """All commit records, oldest first (ties broken by name, so the order is total)."""
        paths = self.store.list(f"{self.prefix}/{COMMITS}", suffix=".json")
        records = self.store.read_json_many(paths)
        return sorted(records, key=lambda r: (r["committed_ns"], r["name"]))
