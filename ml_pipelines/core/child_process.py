"""Child processes that die with the process that started them.

A step killed with SIGKILL runs no cleanup, so its children (the bento build, a
bentoml export) would live on and finish work for a version that is never
committed. On Linux each child is started through a tiny launcher that asks the
kernel for SIGKILL when its parent dies (prctl PR_SET_PDEATHSIG), checks that the
parent is still there (it may have died before the request was made), then execs
the real command: same pid, nothing left running. Elsewhere the command runs as is.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

# Runs with -I -S (no site, no environment, no package imports) before exec; argv: parent pid, command...
LAUNCHER = """
import ctypes, os, signal, sys
PR_SET_PDEATHSIG = 1
if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
    sys.exit(f"prctl(PR_SET_PDEATHSIG) failed: errno {ctypes.get_errno()}")
if os.getppid() != int(sys.argv[1]):
    sys.exit("the parent process died before its child started")
os.execvp(sys.argv[2], sys.argv[2:])
"""


def dies_with_parent(command: Sequence[str]) -> list[str]:
    """command, wrapped so that the process running it gets SIGKILL when this process dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return list(command)
    return [sys.executable, "-I", "-S", "-c", LAUNCHER, str(os.getpid()), *command]


def run_child(
    command: Sequence[str], *, env: Mapping[str, str], timeout: float, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """subprocess.run for a child that must not outlive this process; output captured as text."""
    return subprocess.run(
        dies_with_parent(command), env=dict(env), cwd=cwd, capture_output=True, text=True, timeout=timeout,
        check=False,
    )


def stream_child(
    command: Sequence[str], *, env: Mapping[str, str], timeout: float, on_line: Callable[[str], None],
    cwd: Path | None = None,
) -> tuple[int, list[str]]:
    """run_child with stdout and stderr merged and handed to on_line line by line as the child
    writes them (Python children unbuffered); (exit status, every line). Killed after timeout."""
    process = subprocess.Popen(
        dies_with_parent(command), env={**env, "PYTHONUNBUFFERED": "1"}, cwd=cwd, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1,
    )
    expired = threading.Event()

    def kill_on_timeout() -> None:
        expired.set()
        process.kill()

    timer = threading.Timer(timeout, kill_on_timeout)
    timer.start()
    lines: list[str] = []
    try:
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            on_line(lines[-1])
        returncode = process.wait()
    finally:
        timer.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()
    if expired.is_set():
        raise subprocess.TimeoutExpired(list(command), timeout, output="\n".join(lines))
    return returncode, lines
