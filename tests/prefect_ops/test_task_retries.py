"""Prefect tasks retry only what retrying can fix (lloco_core/store/retry.py): a missing source
fails at once with one log line naming it (it was retried 3 times over ~18 s with 4 tracebacks),
and a storage outage that heals within the retry window ends in success."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect import flow

from lloco_core.config import IngestConfig
from tasks.ingest import ingest_task
from tests.s3server import SeaweedS3

from .conftest import Stack

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@flow(name="ingest-once")
def ingest_once(config: IngestConfig) -> dict[str, Any]:
    """The ingest task as a flow calls it; reports its final state instead of raising."""
    state = ingest_task(config, return_state=True)
    return {"state": state.name, "task_run_id": str(state.state_details.task_run_id), "result": state.result(raise_on_failure=False) if state.is_completed() else None}


def task_run(stack: Stack, task_run_id: str) -> tuple[dict[str, Any], list[str]]:
    run = stack.request("GET", f"/task_runs/{task_run_id}").json()
    logs = stack.request("POST", "/logs/filter", json={"logs": {"task_run_id": {"any_": [task_run_id]}}, "sort": "TIMESTAMP_ASC"}).json()
    return run, [entry["message"] for entry in logs]


class RetryAnnounced(logging.Handler):
    """Sets `seen` when Prefect logs that a task run will be retried."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "Retry 1/" in record.getMessage():
            self.seen.set()


@pytest.fixture
def retry_announced() -> Iterator[RetryAnnounced]:
    handler = RetryAnnounced()
    logger = logging.getLogger("prefect.task_runs")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def test_missing_source_fails_at_once_with_one_line(prefect_api: Stack, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder"
    started = time.monotonic()
    outcome = ingest_once(IngestConfig(root=str(tmp_path / "store"), corpus="c", source=str(missing)))
    elapsed = time.monotonic() - started
    assert outcome["state"] == "Failed"
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    run, logs = task_run(prefect_api, outcome["task_run_id"])
    assert run["run_count"] == 1, "bad input must not be retried"
    assert elapsed < 15, f"took {elapsed:.1f} s: a retry delay was waited out"
    errors = [line for line in logs if "not retried" in line]
    assert len(errors) == 1 and str(missing) in errors[0], logs
    assert not any("Retry" in line for line in logs), logs


def test_storage_outage_that_heals_within_the_retry_window_succeeds(prefect_api: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, retry_announced: RetryAnnounced) -> None:
    source = tmp_path / "docs"
    source.mkdir()
    for i in range(3):
        (source / f"d{i}.txt").write_text(f"document {i} " * 20)
    with SeaweedS3(tmp_path / "weed") as s3:
        s3.make_bucket("lloco")
        for name, value in s3.env().items():  # endpoint and keys from the environment, as on a worker
            monkeypatch.setenv(name, value)
        s3.outage()

        def heal() -> None:  # the server comes back once the task has failed and is waiting to retry
            if retry_announced.seen.wait(timeout=120):
                s3.recover()

        healer = threading.Thread(target=heal)
        healer.start()
        try:
            outcome = ingest_once(IngestConfig(root="s3://lloco/store", corpus="c", source=str(source)))
        finally:
            retry_announced.seen.set()
            healer.join()
        assert outcome["state"] == "Completed", outcome
        assert outcome["result"]["documents_added"] == 3
        run, _ = task_run(prefect_api, outcome["task_run_id"])
        assert run["run_count"] >= 2, "the first attempt met the outage"


def test_finetune_child_exit_status_maps_to_the_policy() -> None:
    """The finetune task runs a child process: its exit status says whether to retry."""
    from lloco_core.errors import InputError
    from lloco_core.store.retry import EX_TEMPFAIL, is_transient
    from tasks.finetune import child_error

    bad = child_error(2, ["loading...\n", "finetune: error: QA file q.jsonl: line 3 has no question\n"])
    assert isinstance(bad, InputError) and str(bad) == "QA file q.jsonl: line 3 has no question" and not is_transient(bad)
    assert is_transient(child_error(EX_TEMPFAIL, ["finetune: storage error (transient): EndpointConnectionError: ...\n"]))
    crash = child_error(1, ["Traceback ...\n", "RuntimeError: boom\n"])
    assert isinstance(crash, RuntimeError) and not is_transient(crash)
