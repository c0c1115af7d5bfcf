"""One retry policy for storage and network errors, shared by the Prefect tasks and the CLI.

Only errors that can heal by themselves are retried: refused or dropped connections, timeouts,
S3 throttling and 5xx answers. Bad input (a missing file, refused credentials, an invalid config,
a bad item) fails at once, because trying again cannot fix it and only delays the message.
Every stage is idempotent (content-keyed files, commit records written last), so retrying a
whole task or command never duplicates data.

The Prefect tasks use `prefect_retry_options()` (Prefect's own retry machinery); the CLI, which
must not import Prefect, uses `call_with_retries` with the same delays.
"""

from __future__ import annotations

import errno
import random
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

RETRY_DELAYS_S: tuple[float, ...] = (2.0, 4.0, 8.0, 16.0)
"""Seconds before each retry: four retries spread over ~30 s ride out a restarting S3 endpoint."""
JITTER = 0.25
"""Each delay is drawn from [d * (1 - JITTER), d * (1 + JITTER)] (Prefect's clamped jitter), so
workers that failed together do not retry together."""

EX_TEMPFAIL = 75
"""Exit status (sysexits.h) of a child process that failed on a transient error: retry it."""

_PERMANENT = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError, ValueError, TypeError, LookupError, NotImplementedError, ImportError)
_TRANSIENT_ERRNOS = {errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE, errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN, errno.EAGAIN}
# Third-party exception classes (matched by name along the MRO, so the CLI imports neither library).
_TRANSIENT_CLASSES = {
    ("botocore.exceptions", "ConnectionError"),  # EndpointConnectionError, ConnectTimeoutError, ConnectionClosedError, ReadTimeoutError
    ("botocore.exceptions", "HTTPClientError"),
    ("botocore.exceptions", "IncompleteReadError"),
    ("botocore.exceptions", "ResponseStreamingError"),
    ("aiohttp.client_exceptions", "ClientConnectionError"),  # refused, server disconnected, timeouts
    ("aiohttp.client_exceptions", "ClientPayloadError"),
    ("http.client", "IncompleteRead"),
}
_THROTTLING_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequests", "RequestTimeout", "InternalError", "ServiceUnavailable", "503"}


class TransientError(Exception):
    """Raised where the original error is out of reach (e.g. a child process that exited with
    `EX_TEMPFAIL`) but is known to be transient."""


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, then its causes and contexts, outermost first (each once)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _is_class(exc: BaseException, names: set[tuple[str, str]]) -> bool:
    return any((cls.__module__, cls.__name__) in names for cls in type(exc).__mro__)


def _client_error_is_transient(exc: BaseException) -> bool | None:
    """An S3 answer (botocore ClientError): 5xx, 429 and throttling codes are transient, other codes are not."""
    response = getattr(exc, "response", None)
    if not _is_class(exc, {("botocore.exceptions", "ClientError")}) or not isinstance(response, dict):
        return None
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    code = str(response.get("Error", {}).get("Code", ""))
    return status >= 500 or status == 429 or code in _THROTTLING_CODES


def is_transient(exc: BaseException) -> bool:
    """True if retrying may succeed: the first decisive error along the cause chain is a
    connection problem, a timeout, S3 throttling or a 5xx answer.

    Wrappers (a generic OSError from s3fs, a lloco InputError raised *from* a connection error)
    are looked through; a missing file, refused permission or invalid value decides "no".
    """
    for error in _chain(exc):
        if isinstance(error, TransientError) or isinstance(error, (ConnectionError, TimeoutError)):
            return True
        if isinstance(error, _PERMANENT):
            return False
        client = _client_error_is_transient(error)
        if client is not None:
            return client
        if _is_class(error, _TRANSIENT_CLASSES):
            return True
        if isinstance(error, OSError) and error.errno in _TRANSIENT_ERRNOS:
            return True
    return False


def retry_delays(jitter: float = JITTER, rng: random.Random | None = None) -> list[float]:
    """The delays of one retry sequence, jittered."""
    rng = rng or random.Random()
    return [rng.uniform(d * (1 - jitter), d * (1 + jitter)) for d in RETRY_DELAYS_S]


def call_with_retries(fn: Callable[[], T], on_retry: Callable[[BaseException, int, float], None] | None = None, delays: list[float] | None = None) -> T:
    """`fn()`, retried after each transient error with the policy's delays; anything else, or the
    last transient error, propagates. `on_retry(error, attempt, delay)` hears about each retry."""
    delays = retry_delays() if delays is None else delays
    for attempt, delay in enumerate([*delays, None], start=1):
        try:
            return fn()
        except Exception as error:
            if delay is None or not is_transient(error):
                raise
            if on_retry is not None:
                on_retry(error, attempt, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def prefect_retry_options(condition: Callable[..., bool]) -> dict[str, Any]:
    """Keyword arguments for `@task(...)`: the policy's delays and jitter, with `condition` as the
    `retry_condition_fn` (it should call `is_transient` on the failed state's exception)."""
    return {"retries": len(RETRY_DELAYS_S), "retry_delay_seconds": list(RETRY_DELAYS_S), "retry_jitter_factor": JITTER, "retry_condition_fn": condition}
