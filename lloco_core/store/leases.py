"""Leases: concurrent compresses of one corpus split the work instead of doing it twice.

Why leases and not conditional writes: two runs with different shard sizes cut different shards,
so no single object name is contended and an exclusive create of a shard or record would not stop
them encoding the same documents. S3 conditional writes (`If-None-Match`) are also recent, not in
the s3fs API, and not on every S3-compatible server; a lease works on every fsspec filesystem.

A lease is a small JSON file `<encoder prefix>/_leases/<owner>-<shard>.json` naming the document
versions its owner is encoding and when it expires (renewed every `RENEW_S` while held). Claiming
is write-then-look, which excludes without any atomic primitive: a run writes its lease, then
lists the leases; if another live lease covers one of its documents it withdraws its own and
backs off for a random moment. Two runs cannot both proceed: of two writes, the later one's
listing sees the earlier lease (listings are strongly consistent on local disks and S3). Both may
withdraw; the random back-off breaks the tie. A run that finds documents leased by another skips
them (deferred) and, after its own shards, waits until they are committed or the lease expires
(a killed owner stops renewing; one that died on this host is seen dead at once), then takes over
what is left.

Leases decide only who works; correctness never depends on them. Commits stay the only truth, so
an expired or lost lease at worst costs duplicate work, never a duplicate or wrong row.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from pydantic import BaseModel, Field, ValidationError

from lloco_core.store.records import DocumentMap, SegmentName
from lloco_core.store.storage import Store

LEASES = "_leases"
TTL_S = 120.0
RENEW_S = 30.0


class LeaseRecord(BaseModel):
    owner: SegmentName
    shard: SegmentName
    documents: DocumentMap = Field(default_factory=dict)
    created_ns: int = Field(ge=0)
    expires_ns: int = Field(ge=0)
    host: str = ""  # with pid: a lease whose owner died on this host is dead now, not at expiry
    pid: int = Field(default=0, ge=0)


@dataclass
class Lease:
    record: LeaseRecord
    path: str


def new_owner() -> str:
    host = "".join(c if c.isalnum() or c in "-_." else "-" for c in socket.gethostname())[:40] or "host"
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _owner_died(record: LeaseRecord) -> bool:
    """True when the lease's owner ran on this host and its process is gone (e.g. SIGKILLed), so a
    re-run takes its documents at once instead of waiting out the TTL. Another host's lease is only
    ever judged by its expiry."""
    if not record.pid or record.host != socket.gethostname() or record.pid == os.getpid():
        return False
    try:
        os.kill(record.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return False


class Leases:
    """The leases of one embeddings prefix, as seen by one owner (one compress run)."""

    def __init__(self, store: Store, prefix: str, owner: str | None = None, ttl_s: float = TTL_S, renew_s: float = RENEW_S) -> None:
        self.store = store
        self.folder = f"{prefix}/{LEASES}"
        self.owner = owner or new_owner()
        self.ttl_s = ttl_s
        self.renew_s = renew_s

    def live(self) -> list[Lease]:
        """Unexpired leases (unreadable ones are ignored: vacuum removes them once old)."""
        now = time.time_ns()
        found = []
        for path, raw in self.store.read_many(self.store.list(self.folder, ".json")).items():
            if isinstance(raw, Exception):
                continue
            try:
                record = LeaseRecord.model_validate_json(raw)
            except ValidationError:
                continue
            if record.expires_ns > now and not _owner_died(record):
                found.append(Lease(record, path))
        return found

    def taken_by_others(self) -> dict[str, str]:
        """doc_id -> sha256 for every document version another owner holds a live lease on."""
        taken: dict[str, str] = {}
        for lease in self.live():
            if lease.record.owner != self.owner:
                taken.update(lease.record.documents)
        return taken

    def _write(self, shard: str, documents: dict[str, str], created_ns: int) -> str:
        record = LeaseRecord(
            owner=self.owner, shard=shard, documents=documents, created_ns=created_ns, expires_ns=time.time_ns() + int(self.ttl_s * 1e9),
            host=socket.gethostname(), pid=os.getpid(),
        )
        path = f"{self.folder}/{self.owner}-{shard}.json"
        self.store.write_bytes(path, record.model_dump_json().encode())
        return path

    def claim(self, shard: str, documents: dict[str, str], attempts: int = 8) -> tuple[str | None, dict[str, str]]:
        """Lease the documents no other live lease holds: (lease path or None, what was claimed)."""
        for attempt in range(attempts):
            taken = self.taken_by_others()
            free = {d: s for d, s in documents.items() if taken.get(d) != s}
            if not free:
                return None, {}
            path = self._write(shard, free, time.time_ns())
            clash = {d for d, s in self.taken_by_others().items() if free.get(d) == s}
            if not clash:
                return path, free
            self.store.delete(path)  # both may see each other: withdraw, back off, look again
            time.sleep(random.uniform(0.05, 0.3) * (attempt + 1))
        return None, {}

    def release(self, path: str) -> None:
        """Give a claimed lease back without working on it."""
        with contextlib.suppress(OSError):
            self.store.delete(path)

    @contextlib.contextmanager
    def held(self, path: str, shard: str, documents: dict[str, str]) -> Iterator[None]:
        """Keep a claimed lease renewed while the work runs; release it afterwards."""
        stop = threading.Event()
        created = time.time_ns()

        def renew() -> None:
            while not stop.wait(self.renew_s):
                with contextlib.suppress(OSError):
                    self._write(shard, documents, created)

        thread = threading.Thread(target=renew, name=f"lease-{shard}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            self.release(path)

    def wait_for(self, documents: dict[str, str], poll_s: float = 1.0) -> None:
        """Block while another owner's live lease covers any of these document versions."""
        while any(self.taken_by_others().get(d) == s for d, s in documents.items()):
            time.sleep(poll_s)
