"""Prefect flows chaining the tasks: ingest, compress, finetune, evaluate, pipeline, backfill.

Flow runs are as quiet as the CLI: third-party warnings, debug logs and weight-loading bars are
dropped before those libraries load (LLOCO_VERBOSE=1 in the worker's environment keeps them).
"""

from lloco_core.logs import quiet_third_party

quiet_third_party()
