"""Set up a Prefect server for lloco: work pools, the GPU limit, and the deployments of prefect.yaml.

`lloco serve` and the end-to-end tests call these, so what a user runs is what the tests check.
prefect.yaml cannot create work pools or concurrency limits; this module does, idempotently.
"""

from __future__ import annotations

from pathlib import Path

from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate, WorkPoolCreate, WorkPoolUpdate
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterParentFlowRunId,
    FlowRunFilterState,
    FlowRunFilterStateType,
    WorkPoolFilter,
    WorkPoolFilterName,
)
from prefect.client.schemas.objects import StateType
from prefect.exceptions import ObjectNotFound
from prefect.states import Crashed
from prefect.workers.process import ProcessWorker

from flows._runtime import GPU_LIMIT

from .prefect_local import LocalPrefectServer, run_cli

REPO_ROOT = Path(__file__).resolve().parents[1]
PREFECT_FILE = "deployments/prefect.yaml"
CPU_POOL = "lloco-cpu"
GPU_POOL = "lloco-gpu"


def ensure_work_pools(api_url: str, gpus: int = 1) -> None:
    """Process pools `lloco-cpu` (unlimited) and `lloco-gpu` (`gpus` concurrent runs), and the
    global limit `gpu` with `gpus` slots that every GPU stage holds (a second guard for runs that
    reach a GPU from another pool)."""
    template = ProcessWorker.get_default_base_job_template()
    with SyncPrefectClient(api_url) as client:
        for name, limit in ((CPU_POOL, None), (GPU_POOL, gpus)):
            try:
                client.read_work_pool(name)
                client.update_work_pool(name, WorkPoolUpdate(concurrency_limit=limit))
            except ObjectNotFound:
                client.create_work_pool(WorkPoolCreate(name=name, type="process", base_job_template=template, concurrency_limit=limit))
        try:
            client.read_global_concurrency_limit_by_name(GPU_LIMIT)
            client.update_global_concurrency_limit(GPU_LIMIT, GlobalConcurrencyLimitUpdate(limit=gpus, active=True))
        except ObjectNotFound:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=GPU_LIMIT, limit=gpus, active=True))


UNFINISHED = [StateType.PENDING, StateType.RUNNING, StateType.CANCELLING]


def crash_orphaned_runs(api_url: str, message: str) -> list[str]:
    """Mark Crashed every unfinished run of the lloco pools, with its unfinished subflows.

    Call only when no worker of these pools is running (just before this serve's workers start,
    or after they stopped): their flow-run processes died with them without reporting, and the UI
    showed those runs Running forever. A retry from the UI re-runs one; finished work is cached.
    Scheduled runs (the nightly schedule, backfill children not yet started) stay as they are."""
    unfinished = FlowRunFilterState(type=FlowRunFilterStateType(any_=UNFINISHED))
    with SyncPrefectClient(api_url) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(state=unfinished), work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[CPU_POOL, GPU_POOL])))
        crashed = []
        while runs:
            for run in runs:
                client.set_flow_run_state(run.id, Crashed(message=message), force=True)
                crashed.append(run.name)
            parents = [run.id for run in runs]
            runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(state=unfinished, parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=parents)))
    return crashed


def deploy_all(server: LocalPrefectServer, repo_root: Path = REPO_ROOT, timeout: float = 180.0) -> str:
    """`prefect deploy --all` from the repository root (the deployments' working directory)."""
    return run_cli(server, "deploy", "--all", "--prefect-file", PREFECT_FILE, cwd=repo_root, timeout=timeout).stdout


def set_up(server: LocalPrefectServer, gpus: int = 1, repo_root: Path = REPO_ROOT) -> str:
    """Pools, limit and deployments on a running server; returns the deploy output."""
    ensure_work_pools(server.api_url, gpus)
    return deploy_all(server, repo_root)
