"""The service's worker processes live and die with `bentoml serve`.

`bentoml serve` is circus's arbiter: it starts each worker (the HTTP gateway and
the predictor) in a session of its own and respawns a worker that exits. So:

- killing the server's process group reaches only the arbiter, and an arbiter
  killed with SIGKILL leaves its workers serving. Each worker therefore asks the
  kernel for SIGTERM when its parent dies (Linux PR_SET_PDEATHSIG; elsewhere a
  thread watches the parent), and refuses to start when its parent is already gone;
- a worker that cannot start would be respawned forever. Under `ml-pipelines serve`
  (which passes the arbiter's pid as ML_PIPELINES_SERVE_PARENT) such a worker
  stops the whole server instead, after logging why.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

log = logging.getLogger("ml_pipelines.serving")

PR_SET_PDEATHSIG = 1  # linux/prctl.h
PARENT_POLL_SECONDS = 1.0


def parent_is_gone(parent_pid: int | None) -> bool:
    """True when the process that started this one has exited (we were re-parented). Without the
    parent's pid, a parent of pid 1 means re-parented to init, except in a container whose first
    process is `bentoml serve` itself (a containerized bento's entrypoint execs it)."""
    ppid = os.getppid()
    if parent_pid is not None:
        return ppid != parent_pid
    return ppid == 1 and not is_bentoml_server(1)


def is_bentoml_server(pid: int) -> bool:
    """Whether process `pid` is a `bentoml serve` (from its command line; False where there is no /proc)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return False
    return "serve" in argv and any(os.path.basename(arg) == "bentoml" for arg in argv)


def stop_with_parent(parent_pid: int | None) -> None:
    """Call in a worker: SIGTERM reaches it when its parent, the arbiter, dies; RuntimeError when
    the parent died before this call."""
    if not _set_parent_death_signal(signal.SIGTERM):
        threading.Thread(target=_watch_parent, args=(os.getppid(),), name="parent-watcher", daemon=True).start()
    if parent_is_gone(parent_pid):
        raise RuntimeError(f"bentoml serve (pid {parent_pid or 'unknown'}) that started this worker is gone")


def stop_server(parent_pid: int | None, reason: str) -> bool:
    """From a worker that cannot start: log why and stop the whole server (SIGTERM to the arbiter),
    so that circus does not respawn the worker forever. Only under `ml-pipelines serve`, whose
    arbiter pid is known; True when the server was told to stop."""
    if parent_pid is None or os.getppid() != parent_pid:
        return False
    log.critical("%s; stopping the server (pid %d)", reason, parent_pid)
    os.kill(parent_pid, signal.SIGTERM)
    return True


def _set_parent_death_signal(sig: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0


def _watch_parent(ppid: int) -> None:
    while os.getppid() == ppid:
        time.sleep(PARENT_POLL_SECONDS)
    os.kill(os.getpid(), signal.SIGTERM)
