"""A watchdog that stops a process's children when that process dies, however it dies.

A SIGKILLed `lloco serve` cannot stop its Prefect server and workers itself, and they would run
on, orphaned. So `lloco serve` first starts this watchdog in its own session, holding the read end
of a pipe whose write end only `lloco serve` holds, and registers every child on it:

    +PID CREATE_TIME    watch this process (and, when the time comes, its descendants)
    -PID                forget it (it was stopped normally)
    exit                the parent shut down cleanly: exit without stopping anything

End of file without `exit` means the parent died: every watched process still alive (same PID
and start time, so a reused PID is never touched) is stopped together with all its descendants
(flow runs a worker started in their own sessions included): SIGTERM, then SIGKILL after a grace
period. Standard library and psutil only, so it starts in a fraction of a second.

    python -m lloco.reaper FD
"""

from __future__ import annotations

import os
import signal
import sys

import psutil

GRACE_S = 5.0


def _tree(pid: int, create_time: float) -> list[psutil.Process]:
    """The watched process and its descendants, if it is still the process that was registered."""
    try:
        process = psutil.Process(pid)
        if abs(process.create_time() - create_time) > 0.01:
            return []
        return [process, *process.children(recursive=True)]
    except psutil.Error:
        return []


def stop_all(watched: dict[int, float], grace: float = GRACE_S) -> list[int]:
    """SIGTERM every watched tree (descendants collected before any signal), SIGKILL what is
    left after `grace` seconds; returns the PIDs that were signalled."""
    processes = {p.pid: p for pid, created in watched.items() for p in _tree(pid, created)}
    for process in processes.values():
        try:
            process.send_signal(signal.SIGTERM)
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(list(processes.values()), timeout=grace)
    for process in alive:
        try:
            process.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=grace)
    return sorted(processes)


def watch(fd: int) -> int:
    """Read registrations until EOF; stop everything still watched unless told `exit`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent; we act on its death
    watched: dict[int, float] = {}
    with os.fdopen(fd, "r") as pipe:
        for line in pipe:
            command, _, rest = line.strip().partition(" ")
            if command == "exit":
                return 0
            if command.startswith("+"):
                watched[int(command[1:])] = float(rest)
            elif command.startswith("-"):
                watched.pop(int(command[1:]), None)
    stop_all(watched)
    return 0


if __name__ == "__main__":
    sys.exit(watch(int(sys.argv[1])))
