"""Real server processes for end-to-end tests: start one on loopback, wait until
it answers, stop it (and every child it spawned) by process group.

Tests use `running(...)`, a context manager that does all three and always stops the
server; start_server, wait_for_url and stop_server are its parts (the benchmarks use
them directly).

A server is started through `bash -c "set -m; exec ..."` in a new session, so its
PID is also its process-group id and `os.killpg` reaches the whole tree (Dagster's
webserver, daemon and code servers; BentoML's workers; postgres backends).
SIGINT and SIGTERM are reset to their defaults in the child: a process that
inherits an ignored SIGINT (a background job without job control) makes Dagster
ignore SIGTERM too, because `dagster dev` maps SIGTERM onto SIGINT's handler.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil
import pytest

from ml_pipelines_tests import REPO_ROOT

VENV_BIN = REPO_ROOT / ".venv" / "bin"

# keep every test offline and quiet
QUIET_ENV = {
    "DAGSTER_DISABLE_TELEMETRY": "1",
    "BENTOML_DO_NOT_TRACK": "True",
    "GX_ANALYTICS_ENABLED": "False",
    "PYTHONUNBUFFERED": "1",
}


T = TypeVar("T")


class ServerError(RuntimeError):
    """A server did not start, or did not answer in time; the message holds its log tail."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def venv_executable(name: str) -> str:
    """The project's virtualenv script `name`, falling back to PATH."""
    path = VENV_BIN / name
    return str(path) if path.exists() else name


@dataclass
class ServerProcess:
    name: str
    popen: subprocess.Popen
    log_path: Path
    command: list[str]
    stopped: list[psutil.Process] = field(default_factory=list)
    # what running() waits for: a URL that answers 200, a callable of the server that
    # returns something truthy once it is ready, or None (nothing to ask)
    ready: str | Callable[[ServerProcess], Any] | None = None
    ready_timeout: float = 120.0

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def pgid(self) -> int:
        return self.popen.pid  # start_new_session: the leader's pid is the group id

    def running(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, chars: int = 4000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "<no log>"
        return text[-chars:]

    def processes(self) -> list[psutil.Process]:
        """Every live process of the server: its process group plus all descendants of the leader
        (a descendant that left the group would otherwise escape killpg)."""
        found: dict[int, psutil.Process] = {}
        for proc in psutil.process_iter(["pid"]):
            try:
                if os.getpgid(proc.pid) == self.pgid:
                    found[proc.pid] = proc
            except (ProcessLookupError, psutil.Error):
                continue
        try:
            leader = psutil.Process(self.pid)
            for child in leader.children(recursive=True):
                found.setdefault(child.pid, child)
        except psutil.Error:
            pass
        return [p for p in found.values() if _alive(p)]

    def wait_ready(self) -> None:
        """Block until `ready` answers; ServerError, with the log tail, if the server exits first
        or does not answer within ready_timeout."""
        if self.ready is None:
            return
        if isinstance(self.ready, str):
            wait_for_url(self.ready, server=self, timeout=self.ready_timeout)
            return
        check = self.ready
        wait_until(f"{self.name} to be ready", lambda: check(self), self.ready_timeout, server=self,
                   timeout_error=ServerError)


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _reset_signals() -> None:
    # runs in the child between fork and exec
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def start_server(
    name: str,
    command: Sequence[str],
    *,
    log_path: Path,
    cwd: Path = REPO_ROOT,
    env: Mapping[str, str] | None = None,
) -> ServerProcess:
    """Start `command` under job control in its own session; stdout and stderr go to log_path."""
    full_env = {**os.environ, **QUIET_ENV, **(env or {})}
    shell = f"set -m; exec {shlex.join(command)}"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        popen = subprocess.Popen(
            ["bash", "-c", shell],
            cwd=cwd,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_reset_signals,  # noqa: PLW1509 - tests start servers from the main thread
        )
    return ServerProcess(name, popen, log_path, list(command))


def wait_for_url(
    url: str,
    *,
    server: ServerProcess | None = None,
    timeout: float = 120.0,
    interval: float = 0.5,
    ready: Callable[[httpx.Response], bool] = lambda r: r.status_code == 200,
) -> httpx.Response:
    """Poll url until `ready(response)`; fail early, with the log tail, if the server exits."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    with httpx.Client(timeout=5.0, trust_env=False) as client:
        while True:
            if server is not None and not server.running():
                raise ServerError(
                    f"{server.name} exited with code {server.popen.returncode} before {url} answered;"
                    f" log tail:\n{server.log_tail()}"
                )
            try:
                response = client.get(url)
                if ready(response):
                    return response
                last = f"HTTP {response.status_code}: {response.text[:200]}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                tail = f"; log tail:\n{server.log_tail()}" if server is not None else ""
                raise ServerError(f"{url} was not ready after {timeout:.0f}s ({last}){tail}")
            time.sleep(interval)


def wait_until(
    what: str, probe: Callable[[], T | None], timeout: float, *, server: ServerProcess | None = None,
    interval: float = 0.5, timeout_error: type[Exception] = AssertionError,
) -> T:
    """Poll probe() until it returns something truthy, and return that. ServerError, with the
    server's log tail, if the server exits first; timeout_error when timeout seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if server is not None and not server.running():
            raise ServerError(
                f"{server.name} exited with code {server.popen.returncode} while waiting for {what};"
                f" log tail:\n{server.log_tail()}"
            )
        if time.monotonic() > deadline:
            tail = f"; {server.name} log tail:\n{server.log_tail(6000)}" if server is not None else ""
            raise timeout_error(f"timed out after {timeout:.0f}s waiting for {what}{tail}")
        time.sleep(interval)


def stop_server(server: ServerProcess, *, timeout: float = 90.0, sig: int = signal.SIGTERM) -> None:
    """Signal the server's process group and wait until every one of its processes is gone.

    Raises AssertionError when any process had to be SIGKILLed or is still alive:
    a server that does not stop on SIGTERM is a bug the tests should see.
    """
    processes = server.processes()
    server.stopped = processes
    try:
        os.killpg(server.pgid, sig)
    except ProcessLookupError:
        pass
    # descendants that left the group get the signal one by one
    for proc in processes:
        try:
            if os.getpgid(proc.pid) != server.pgid:
                proc.send_signal(sig)
        except (ProcessLookupError, psutil.Error):
            continue
    deadline = time.monotonic() + timeout
    try:
        server.popen.wait(timeout=timeout)  # reaps the leader, our child
    except subprocess.TimeoutExpired:
        pass
    remaining = max(0.0, deadline - time.monotonic())
    _, alive = psutil.wait_procs(processes, timeout=remaining)
    alive = [p for p in alive if _alive(p)]
    if server.running() and server.pid not in {p.pid for p in alive}:
        alive.append(psutil.Process(server.pid))
    if alive:
        described = [_describe(p) for p in alive]
        for proc in alive:
            try:
                proc.kill()
            except psutil.Error:
                continue
        try:
            os.killpg(server.pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        server.popen.wait(timeout=10)
        raise AssertionError(
            f"{server.name}: {len(described)} process(es) survived {signal.Signals(sig).name} for {timeout:.0f}s"
            f" and were killed: {'; '.join(described)}\nlog tail:\n{server.log_tail()}"
        )


def _describe(proc: psutil.Process) -> str:
    try:
        return f"{proc.pid} {' '.join(proc.cmdline())[:120]}"
    except psutil.Error:
        return str(proc.pid)


def assert_all_gone(processes: Sequence[psutil.Process]) -> None:
    alive = [_describe(p) for p in processes if _alive(p)]
    assert not alive, f"still running: {'; '.join(alive)}"


@contextlib.contextmanager
def running(
    name: str,
    command: Sequence[str],
    *,
    log_path: Path,
    ready: str | Callable[[ServerProcess], Any] | None,
    ready_timeout: float = 120.0,
    wait: bool = True,
    cwd: Path = REPO_ROOT,
    env: Mapping[str, str] | None = None,
    stop_timeout: float = 90.0,
    stop_signal: int = signal.SIGTERM,
) -> Iterator[ServerProcess]:
    """A real server for the length of the block: started under job control in its own
    process group (start_server), ready, and always stopped by process group on the way
    out (stop_server), even when it failed to start or the block raised.

    ready: a URL polled until it answers 200, a callable polled with the server until it
    returns something truthy, or None for a process with nothing to ask (a daemon, a run
    worker). wait=False yields as soon as the process is started, so that the caller can
    work while it boots and then call server.wait_ready().

    On the way out every process of the server must be gone: stop_server raises
    AssertionError, with the log tail, when any of them needed SIGKILL after stop_timeout
    seconds. stop_signal=SIGKILL stops a process the test has no reason to stop gently
    (one it may already have killed itself).
    """
    server = start_server(name, command, log_path=log_path, cwd=cwd, env=env)
    server.ready, server.ready_timeout = ready, ready_timeout
    try:
        if wait:
            server.wait_ready()
        yield server
    finally:
        stop_server(server, timeout=stop_timeout, sig=stop_signal)
        assert_all_gone(server.stopped)
        assert not server.running(), f"{server.name} (pid {server.pid}) still runs"


WORKSPACE_QUERY = """
{
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError { __typename ... on PythonError { message } }
      }
    }
    ... on PythonError { message }
  }
}
"""


def wait_for_code_locations(graphql, server: ServerProcess, deadline: float) -> None:
    """`dagster dev` answers server_info before its code server has loaded the definitions:
    wait (via the GraphQL function given) until every code location is LOADED."""
    while True:
        data = graphql(WORKSPACE_QUERY)["workspaceOrError"]
        assert data["__typename"] == "Workspace", data
        entries = data["locationEntries"]
        for entry in entries:
            error = entry["locationOrLoadError"]
            if error and error["__typename"] == "PythonError":
                pytest.fail(f"code location {entry['name']} failed to load: {error['message']}")
        if entries and all(e["loadStatus"] == "LOADED" and e["locationOrLoadError"] for e in entries):
            return
        if time.monotonic() > deadline:
            raise ServerError(f"code locations still loading: {entries}\n{server.log_tail()}")
        time.sleep(1)
