"""`lloco serve` refuses a port someone else listens on: it never attaches to a server it did not start.
(The full start-up path is the one tests/prefect_ops exercise through lloco.serving.set_up.)"""

from __future__ import annotations

import socket

import pytest

from lloco.cli import main


def test_serve_refuses_a_busy_port(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
    assert f"port 127.0.0.1:{port} is in use" in capsys.readouterr().err
