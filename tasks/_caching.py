"""Cache keys that trust the store, not the orchestrator.

A task's cache key is the content key of what it writes, but only while that output is committed
in the store: if it has disappeared, the policy yields no key, so the task runs again instead of
returning a stale cached result.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect.cache_policies import CachePolicy
from prefect.context import TaskRunContext
from prefect.tasks import exponential_backoff

STORAGE_RETRIES = dict(retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=2), retry_jitter_factor=0.5)


class CommittedOutput(CachePolicy):
    """Key = `key_fn(inputs)` when `exists_fn(inputs)` says the output is committed, else no caching."""

    def __init__(self, key_fn: Callable[[dict[str, Any]], str], exists_fn: Callable[[dict[str, Any]], bool]) -> None:
        self.key_fn = key_fn
        self.exists_fn = exists_fn

    def compute_key(self, task_ctx: TaskRunContext, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any) -> str | None:
        if not self.exists_fn(inputs):
            return None
        return self.key_fn(inputs)
