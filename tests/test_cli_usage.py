"""The command line answers at once and fails cleanly: `--help` and parsing import nothing heavy,
every option documents itself and its default, and every usage or input error is one line on
stderr with exit 2, no traceback, and no folder left behind."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lloco.cli import build_parser, command_names, main

HEAVY = ("torch", "transformers", "peft", "deepspeed", "prefect", "pyarrow", "fsspec", "s3fs", "bm25s", "numpy")
# A value each command parses but its config refuses (a corpus name that would leave its prefix).
BAD_VALUES = {
    "ask": ["--corpus", "../x", "question?"],
    "compress": ["--corpus", "../x", "--model", "m"],
    "evaluate": ["--corpus", "../x", "eval.jsonl"],
    "export": ["--corpus", "../x", "--out", "out/x.parquet"],
    "finetune": ["--corpus", "../x", "--qa", "qa.jsonl", "--model", "m"],
    "ingest": ["src", "--corpus", "../x"],
    "status": ["--corpus", "../x"],
    "compress-shard-size": ["--corpus", "c", "--model", "m", "--shard-size", "0"],
}


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty current directory and no $LLOCO_ROOT: the default root would be ./lloco_data here."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LLOCO_ROOT", raising=False)
    return tmp_path


def subparsers() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def run_main(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exit_:  # argparse exits on usage errors and --help
        return int(exit_.code or 0)


def test_help_and_parsing_import_nothing_heavy() -> None:
    code = (
        "import sys, contextlib, io\n"
        "from lloco.cli import build_parser, command_names, main\n"
        "for argv in [['--help']] + [[c, '--help'] for c in command_names()] + [[c, '--no-such-option'] for c in command_names()]:\n"
        "    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
        "        try: main(argv)\n"
        "        except SystemExit: pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout.strip().splitlines()[-1]
    assert out == "[]", f"`lloco --help` or a usage error imported {out}: import heavy modules inside run()"


def test_every_option_has_help_and_shows_its_default() -> None:
    for name, parser in subparsers().items():
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"lloco {name} {action.option_strings or action.dest}: no help text"
            if action.option_strings and not action.required:
                assert "default" in action.help.lower() or "(here:" in action.help, f"lloco {name} {action.option_strings[0]}: help does not show the default: {action.help!r}"


@pytest.mark.parametrize("command", command_names())
def test_usage_errors_are_one_line_exit_2_and_create_nothing(command: str, workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = [[command, "--no-such-option"]]
    if any(a.required for a in subparsers()[command]._actions):
        cases.append([command])  # required arguments missing
    cases += [[command.split("-")[0], *argv] for key, argv in BAD_VALUES.items() if key.split("-")[0] == command]
    for argv in cases:
        assert run_main(argv) == 2, argv
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, f"{argv}: {err!r}"
        assert err.startswith(f"lloco {command}: "), err
        assert list(workdir.iterdir()) == [], f"{argv} created {list(workdir.iterdir())}"


def test_validation_error_names_the_option(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(["compress", "--corpus", "c", "--model", "m", "--shard-size", "0", "--segment-length", "-5"]) == 2
    err = capsys.readouterr().err
    assert "--shard-size 0: " in err and "--segment-length -5: " in err, err


def test_ask_task_and_options_must_fit(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--task quality` without options rendered an empty "Choices:" list; options with `--task qa`
    were dropped silently. Both are refused before anything loads; options alone pick quality."""
    assert run_main(["ask", "--corpus", "c", "--task", "quality", "Who?"]) == 2
    assert capsys.readouterr().err.strip() == "lloco ask: invalid options: task 'quality' needs the answer options (--option, once per option)"
    assert run_main(["ask", "--corpus", "c", "--task", "qa", "--option", "A", "--option", "B", "Who?"]) == 2
    assert capsys.readouterr().err.strip() == "lloco ask: invalid options: answer options go with a multiple-choice task (quality), not 'qa'"
    assert list(workdir.iterdir()) == []
    from lloco_core.qa.config import AskConfig

    assert AskConfig(corpus="c", question="Who?", options=["a", "b"]).task == "quality"
    assert AskConfig(corpus="c", question="Who?").task == "qa"


def test_failed_read_creates_no_default_root(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`lloco ask` without --root on a machine with no store left an empty ./lloco_data behind."""
    assert run_main(["ask", "--corpus", "c", "--device", "cpu", "who?"]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and len(err.strip().splitlines()) == 1, err
    assert list(workdir.iterdir()) == []
    assert run_main(["status"]) == 2
    assert "no store at" in capsys.readouterr().err
    assert list(workdir.iterdir()) == []


def test_failed_command_keeps_folders_that_hold_files(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Only empty folders the failed command created are removed: an existing store is never touched."""
    (workdir / "lloco_data" / "keep").mkdir(parents=True)
    (workdir / "lloco_data" / "keep" / "file.txt").write_text("x")
    assert run_main(["export", "--corpus", "nothing", "--out", str(workdir / "new" / "deep" / "x.parquet")]) == 2
    capsys.readouterr()
    assert sorted(p.name for p in workdir.iterdir()) == ["lloco_data"]
    assert (workdir / "lloco_data" / "keep" / "file.txt").read_text() == "x"


def test_status_on_an_empty_store_and_debug_traceback(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (workdir / "store").mkdir()
    assert run_main(["status", "--root", str(workdir / "store")]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == {"root": str(workdir / "store"), "corpora": []}
    assert run_main(["status", "--root", str(workdir / "store"), "--corpus", "missing", "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("lloco status: error: corpus 'missing' is not in the store")
