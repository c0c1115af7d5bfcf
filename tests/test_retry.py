"""The one retry policy (lloco_core/store/retry.py): storage and network errors are retried, bad
input is not, and a CLI command rides out an 8 s outage of a real S3 server (SeaweedFS stopped,
then restarted on the same ports over the same data)."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from pydantic import ValidationError
from s3fs.errors import translate_boto_error

from lloco_core.config import IngestConfig
from lloco_core.errors import BadItem, InputError, StoreError
from lloco_core.store.retry import RETRY_DELAYS_S, TransientError, call_with_retries, is_transient, retry_delays
from tests.s3server import SeaweedS3


def refused() -> ConnectionRefusedError:
    """A real refused connection: a port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError as error:
        return error
    raise AssertionError("someone listens on a port just released")


def s3_answer(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")


def chained(outer: BaseException, cause: BaseException) -> BaseException:
    try:
        raise outer from cause
    except BaseException as error:  # noqa: BLE001
        return error


def validation_error() -> ValidationError:
    try:
        IngestConfig(corpus="../x", source="s")
    except ValidationError as error:
        return error
    raise AssertionError("expected a validation error")


TRANSIENT = {
    "connection refused": refused(),
    "botocore endpoint unreachable": EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
    "botocore read timeout": ReadTimeoutError(endpoint_url="http://127.0.0.1:1"),
    "S3 SlowDown": s3_answer("SlowDown", 503),
    "S3 500": s3_answer("InternalError", 500),
    "s3fs-translated 503": translate_boto_error(s3_answer("ServiceUnavailable", 503)),
    "timeout": TimeoutError("read timed out"),
    "errno ECONNRESET": OSError(errno.ECONNRESET, "reset"),
    "input error caused by a refused connection": chained(InputError("cannot read source s3://b/x"), refused()),
    "a child that exited with EX_TEMPFAIL": TransientError("finetune: storage error"),
}
PERMANENT = {
    "missing file": FileNotFoundError(errno.ENOENT, "no such file", "/x"),
    "refused credentials": PermissionError(errno.EACCES, "denied"),
    "s3fs-translated NoSuchKey": translate_boto_error(s3_answer("NoSuchKey", 404)),
    "s3fs-translated AccessDenied": translate_boto_error(s3_answer("AccessDenied", 403)),
    "S3 400": s3_answer("InvalidArgument", 400),
    "input error": InputError("source 'x' does not exist"),
    "bad item": BadItem("line 3: no text"),
    "untrusted store content": StoreError("commit record x.json is not JSON"),
    "invalid config": validation_error(),
    "disk full": OSError(errno.ENOSPC, "no space left"),
    "a bug": RuntimeError("boom"),
}


@pytest.mark.parametrize("name", list(TRANSIENT))
def test_transient_errors_are_retried(name: str) -> None:
    assert is_transient(TRANSIENT[name])


@pytest.mark.parametrize("name", list(PERMANENT))
def test_input_and_other_errors_are_not(name: str) -> None:
    assert not is_transient(PERMANENT[name])


def test_loop_retries_transient_errors_only() -> None:
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise refused()
        return "ok"

    heard: list[tuple[int, float]] = []
    assert call_with_retries(flaky, on_retry=lambda e, attempt, delay: heard.append((attempt, delay)), delays=[0.0, 0.0, 0.0]) == "ok"
    assert len(calls) == 3 and [a for a, _ in heard] == [1, 2]

    calls.clear()

    def missing() -> None:
        calls.append(1)
        raise FileNotFoundError("/nope")

    with pytest.raises(FileNotFoundError):
        call_with_retries(missing, delays=[0.0, 0.0])
    assert len(calls) == 1, "a missing file is never retried"

    with pytest.raises(ConnectionRefusedError):
        call_with_retries(lambda: (_ for _ in ()).throw(refused()), delays=[0.0, 0.0])


def test_a_storage_error_that_outlasts_the_retries_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from lloco.cli import GaveUp, report_error

    try:
        try:
            raise refused()
        except ConnectionRefusedError as last:
            raise GaveUp(4, 31.2) from last
    except GaveUp as error:
        assert report_error("export", error, None, debug=False) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("lloco export: storage error, gave up after 4 retries over 31 s: ConnectionRefusedError: "), err


def test_delays_cover_an_eight_second_outage_even_at_the_low_jitter_bound() -> None:
    delays = retry_delays()
    assert len(delays) == len(RETRY_DELAYS_S)
    assert all(0.75 * d <= got <= 1.25 * d for d, got in zip(RETRY_DELAYS_S, delays))
    assert 0.75 * sum(RETRY_DELAYS_S) > 8 * 2, "the retry window must outlast an 8 s outage with room to spare"


def lloco(*argv: str) -> list[str]:
    script = Path(sys.executable).parent / "lloco"
    return [*([str(script)] if script.exists() else [sys.executable, "-m", "lloco.cli"]), *argv]


def _env(s3: SeaweedS3) -> dict[str, Any]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LLOCO_"))}
    return {**base, **s3.env(), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}


@pytest.mark.slow
def test_cli_command_survives_an_eight_second_s3_outage(tmp_path: Path) -> None:
    """`lloco ingest` started while the S3 endpoint is down finishes once it is back, with one
    stderr line per retry; without retries it failed at once (issue 10)."""
    source = tmp_path / "docs"
    source.mkdir()
    for i in range(3):
        (source / f"d{i}.txt").write_text(f"document {i} " * 20)
    with SeaweedS3() as s3:
        s3.make_bucket("lloco")
        env, root = _env(s3), "s3://lloco/store"
        first = subprocess.run(lloco("ingest", str(source), "--corpus", "c", "--root", root), env=env, capture_output=True, text=True, timeout=120)
        assert first.returncode == 0, first.stderr
        (source / "d3.txt").write_text("a new document " * 20)

        s3.outage()
        down = time.monotonic()
        proc = subprocess.Popen(lloco("ingest", str(source), "--corpus", "c", "--root", root), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stderr is not None
        first_retry = proc.stderr.readline()  # the endpoint is down until the command has failed once
        assert "storage error" in first_retry and "retry 1/" in first_retry, first_retry + proc.stderr.read()
        time.sleep(max(0.0, 8.0 - (time.monotonic() - down)))
        assert proc.poll() is None, f"gave up during the outage: {proc.communicate()}"
        s3.recover()
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, first_retry + err
        assert "Traceback" not in err, err
        assert json.loads(out.strip().splitlines()[-1])["documents_added"] == 1
        status = subprocess.run(lloco("status", "--root", root), env=env, capture_output=True, text=True, timeout=120)
        assert status.returncode == 0, status.stderr
        assert [(c["corpus"], c["documents"]) for c in json.loads(status.stdout.strip().splitlines()[-1])["corpora"]] == [("c", 4)]
