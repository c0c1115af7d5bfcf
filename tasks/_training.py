"""Running a training child process (finetune, train-compressor) from a Prefect task: progress
lines feed a progress artifact, refused checkpoints are logged, the exit status becomes the error
the retry policy should see, and the last stdout line is the run's summary.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any
from uuid import UUID

from prefect.artifacts import update_progress_artifact

from lloco_core.errors import InputError
from lloco_core.store.retry import EX_TEMPFAIL, TransientError
from lloco_core.training.engine import child_environment


def artifact_key(*parts: str) -> str:
    return "-".join(parts).lower().replace("_", "-").replace(".", "-")


def child_error(returncode: int, stderr_tail: list[str], name: str = "finetune") -> Exception:
    """A training child's failure as the error the retry policy should see: bad input (exit 2)
    fails at once, a transient storage error (EX_TEMPFAIL) is retried, anything else is a crash."""
    last = next((line.strip() for line in reversed(stderr_tail) if line.strip()), "")
    if returncode == 2:
        return InputError(last.removeprefix(f"{name}: error: "))
    if returncode == EX_TEMPFAIL:
        return TransientError(last)
    return RuntimeError(f"{name} exited with {returncode}:\n{''.join(stderr_tail)}")


def run_training_child(command: list[str], progress: UUID, logger: Any, name: str) -> dict[str, Any]:
    """Run `command`, following its `lloco-progress` lines; its summary, or the error for its exit status."""
    errors: list[str] = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**child_environment(), "TOKENIZERS_PARALLELISM": "false"}) as proc:
        assert proc.stderr is not None and proc.stdout is not None
        for line in proc.stderr:
            if line.startswith("lloco-progress "):
                event = json.loads(line.removeprefix("lloco-progress "))
                if event["event"] == "step":
                    update_progress_artifact(progress, 100.0 * event["step"] / event["total_steps"])
                elif event["event"] == "checkpoint_refused":
                    logger.warning("checkpoint %s refused: %s", event["checkpoint"], event["reason"])
                else:
                    logger.info("checkpoint committed at step %s: %s", event["step"], event["uri"])
            else:
                errors.append(line)
                errors[:] = errors[-40:]
        out = proc.stdout.read()
    if proc.returncode != 0:
        raise child_error(proc.returncode, errors, name)
    return json.loads(out.strip().splitlines()[-1])
