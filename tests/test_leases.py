"""Leases of a dead owner: a SIGKILLed compress on this host must not make its re-run wait out the
TTL, while a lease from another host counts until it expires (its process cannot be checked)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from lloco_core.store.leases import LeaseRecord, Leases
from lloco_core.store.storage import Store


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _plant(store: Store, folder: str, owner: str, host: str, pid: int) -> None:
    """A lease as another compress run writes it, unexpired."""
    record = LeaseRecord(owner=owner, shard="s1", documents={"d1": "a" * 64}, created_ns=0, expires_ns=time.time_ns() + 10**11, host=host, pid=pid)
    store.write_bytes(f"{folder}/{owner}-s1.json", record.model_dump_json().encode())


def test_a_dead_local_owner_frees_its_documents_at_once_and_a_remote_one_holds_them(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    mine = Leases(store, store.path("c", "embeddings", "k"), owner="me")
    _plant(store, mine.folder, "killed", socket.gethostname(), _dead_pid())
    assert mine.taken_by_others() == {}, "a killed owner on this host holds nothing"
    _plant(store, mine.folder, "elsewhere", "another-host", _dead_pid())
    assert mine.taken_by_others() == {"d1": "a" * 64}, "another host's lease holds until it expires"
    path, claimed = mine.claim("s2", {"d1": "a" * 64, "d2": "b" * 64}, attempts=1)
    assert claimed == {"d2": "b" * 64} and path is not None
