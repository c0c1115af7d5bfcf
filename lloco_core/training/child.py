"""The entry point shared by the training subprocesses (finetune, train-compressor), which the
Prefect tasks and the DeepSpeed launcher start: one exit-status contract for both.

Exit 0 with the summary as the last stdout line (rank 0), 2 on bad input or untrusted store
content (retrying cannot help), EX_TEMPFAIL (75) on a storage or network error worth retrying;
progress goes to stderr as `lloco-progress {json}` lines.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

ProgressFn = Callable[[dict[str, Any]], None]


def progress_to_stderr(event: dict[str, Any]) -> None:
    print("lloco-progress " + json.dumps(event), file=sys.stderr, flush=True)


def run_child(name: str, train: Callable[[ProgressFn], dict[str, Any]]) -> int:
    """Run `train(on_progress)` and map its outcome to the exit status the tasks understand."""
    from pydantic import ValidationError

    from lloco_core.errors import LlocoError
    from lloco_core.store.retry import EX_TEMPFAIL, is_transient

    try:
        result = train(progress_to_stderr)
    except (LlocoError, ValidationError) as err:  # bad input, untrusted store content: retrying cannot help
        print(f"{name}: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:
        if not is_transient(err):
            raise
        print(f"{name}: storage error (transient): {type(err).__name__}: {err}", file=sys.stderr)
        return EX_TEMPFAIL
    if os.environ.get("RANK", "0") == "0":
        print(json.dumps(result))
    return 0
