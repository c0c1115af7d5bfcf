"""Quiet third-party output for the applications built on lloco_core (the CLI, the demo, flow runs).

Libraries under us chatter: bm25s sets its own logger to DEBUG on import ("Building index" per
query), DeepSpeed warns that it picked the CPU accelerator, transformers draws a bar per weight
load and raises FutureWarnings about its own internals. None of it helps a user. By default it is
dropped; `verbose=True` (the CLI's --verbose, or LLOCO_VERBOSE=1 for flow runs) keeps all of it.
Call before the libraries are imported: environment switches are read at their import, logger
filters survive their own setLevel calls.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

VERBOSE_ENV = "LLOCO_VERBOSE"
OUR_MODULES = r"(lloco|lloco_core|flows|tasks)(\.|$)"

# Loggers that set their own level at import (a filter survives that): name -> lowest level shown.
_FILTERED_LOGGERS = {"bm25s": logging.WARNING, "DeepSpeed": logging.ERROR}
# Logger trees that leave their level alone (children inherit it): name -> level when quiet.
_LEVELS = {"accelerate": logging.ERROR, "peft": logging.ERROR, "torch.distributed": logging.ERROR}
_ENV_SWITCHES = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # transformers' "Loading weights" / "Writing model shards" bars
    "TRANSFORMERS_VERBOSITY": "error",  # read by transformers at import: its logger tree's level
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "HF_HUB_VERBOSITY": "error",  # huggingface_hub's "Retrying in 1s [Retry 1/5]" lines while the hub is unreachable
}


class _AtLeast(logging.Filter):
    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.level


def verbose_from_env() -> bool:
    return os.environ.get(VERBOSE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def quiet_third_party(verbose: bool | None = None) -> bool:
    """Silence third-party warnings, debug logs and progress bars unless verbose; returns verbose.

    Our own warnings (lloco, lloco_core, flows, tasks) always show. Child processes inherit the
    environment switches, so a finetune subprocess is quiet too.
    """
    verbose = verbose_from_env() if verbose is None else verbose
    if verbose:
        os.environ[VERBOSE_ENV] = "1"
        return True
    for name, value in _ENV_SWITCHES.items():
        os.environ.setdefault(name, value)
    if "transformers" in sys.modules:  # already imported (a notebook, a test session): switch it directly
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import logging as hub_logging

        hub_logging.set_verbosity_error()
    for name, level in _FILTERED_LOGGERS.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _AtLeast) for f in logger.filters):
            logger.addFilter(_AtLeast(level))
    for name, level in _LEVELS.items():
        logging.getLogger(name).setLevel(level)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("default", module=OUR_MODULES)
    return False
