"""Cache keys that trust the store, not the orchestrator.

A task's cache key is the content key of what it writes. A cache record is trusted only while that
output is committed in the store: if the output has disappeared, the stale record under the key is
removed first, so the task runs again (and its new result is recorded under the same key) instead
of returning a cached result for something that is gone.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import Task, get_run_logger
from prefect.cache_policies import CachePolicy
from prefect.client.schemas.objects import State, TaskRun
from prefect.context import TaskRunContext
from prefect.filesystems import LocalFileSystem, RemoteFileSystem
from prefect.results import ResultStore

from lloco_core.store.retry import is_transient, prefect_retry_options


def retry_storage_errors(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry only storage and network errors (lloco_core.store.retry). Anything else (a missing
    source, an invalid config, a bad item) fails at once with one log line naming it."""
    try:
        state.result(raise_on_failure=True)
    except Exception as error:
        if is_transient(error):
            return True
        get_run_logger().error("%s failed, not retried (retrying cannot fix it): %s: %s", task_run.name, type(error).__name__, error)
        return False
    return False


STORAGE_RETRIES = prefect_retry_options(retry_storage_errors)
"""`@task(**STORAGE_RETRIES)`: the shared policy's delays, retrying storage and network errors only."""


class CommittedOutput(CachePolicy):
    """Key = `key_fn(inputs)`; a record under it counts only while `exists_fn(inputs)` is true.

    The key is returned even before the first run, so the first completion writes the record that
    the next run (a UI retry, a re-run) hits.
    """

    def __init__(self, key_fn: Callable[[dict[str, Any]], str], exists_fn: Callable[[dict[str, Any]], bool]) -> None:
        self.key_fn = key_fn
        self.exists_fn = exists_fn

    def compute_key(self, task_ctx: TaskRunContext, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any) -> str | None:
        key = self.key_fn(inputs)
        if not self.exists_fn(inputs):
            forget_record(task_ctx.result_store, key)
        return key


def forget_record(store: ResultStore | None, key: str) -> None:
    """Delete the cache record stored under `key` (local folder or fsspec storage), if any."""
    if store is None:
        return
    storage = store.metadata_storage or store.result_storage
    resolve = getattr(storage, "_resolve_path", None)
    if resolve is None:
        return
    path = str(resolve(key))
    if isinstance(storage, LocalFileSystem):
        Path(path).unlink(missing_ok=True)
    elif isinstance(storage, RemoteFileSystem) and storage.filesystem.exists(path):
        storage.filesystem.rm(path)
