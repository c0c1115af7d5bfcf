"""Leases: a SIGKILLed compress on this host must not make its re-run wait out the TTL, while a
lease from another host counts until it expires (its process cannot be checked); and documents
another run committed (and released) just before our claim are not encoded twice (a race CI hit:
60 documents encoded for 56)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable
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


class _RivalCommitsFirst(Leases):
    """Leases for run A whose claim comes just after run B committed the same documents and let go
    of its lease: the window between A's look at the commit log and its claim."""

    def __init__(self, *args: object, rival: Callable[[], None], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.rival = rival

    def claim(self, shard: str, documents: dict[str, str], attempts: int = 8) -> tuple[str | None, dict[str, str]]:
        self.rival()
        return super().claim(shard, documents, attempts)


def test_documents_another_run_committed_just_before_the_claim_are_not_encoded_again(tiny_model: Path, tmp_path: Path) -> None:
    from lloco_core.config import CompressConfig
    from lloco_core.model.compress import cached_compressor, compress_shard, encoder_settings, plan_compress
    from tests.conftest import make_text
    from tests.fixtures_compress import run_cli, write_docs

    root = str(tmp_path / "store")
    source = write_docs(tmp_path / "src", {f"d{i}": make_text(i, 60) for i in range(3)})
    assert run_cli("ingest", str(source), "--corpus", "c", "--root", root)[0] == 0
    store = Store(root)
    config = CompressConfig(root=root, corpus="c", model=str(tiny_model), device="cpu")
    settings = encoder_settings(config)
    compressor = cached_compressor(settings, "cpu")
    (shard,) = plan_compress(store, "c", settings, 8).shards
    prefix = store.path("c", "embeddings", settings.key)

    def rival() -> None:
        assert compress_shard(store, "c", settings, shard, compressor, 4, leases=Leases(store, prefix, owner="b")).documents == 3

    result = compress_shard(store, "c", settings, shard, compressor, 4, leases=_RivalCommitsFirst(store, prefix, owner="a", rival=rival))
    assert result.already_committed and result.documents == 3, "A saw B's commit and encoded nothing"
    assert len(list(Path(prefix, "shards").glob("*.parquet"))) == 1
    assert not list(Path(prefix, "_leases").glob("*.json")), "A gave its lease back"
