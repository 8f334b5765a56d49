"""End to end: how `ml-pipelines serve` (a real `bentoml serve`) starts, fails and dies.

- killed with its process group, by SIGKILL or SIGTERM, every worker stops and the
  port is free;
- a version it cannot serve (no champion, the model missing from the BentoML store,
  a checksum mismatch, a model that does not load) ends it at startup with a non-zero
  exit and the reason, instead of respawning workers forever;
- a champion that fails to load while it runs: the old version answers on, /readyz is
  503 and says why, /metrics says the served version is not the champion, and it
  recovers once the champion loads; a predictor restarted then stops the server.

Each test serves its own copy of one trained platform (two versions of the
credit-default classifier of test_serving.py), so it may break it at will.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import psutil
import pytest

from ml_pipelines_tests.servers import (
    REPO_ROOT,
    ServerProcess,
    free_port,
    running,
    venv_executable,
    wait_for_url,
    wait_until,
)
from ml_pipelines_tests.serving.test_serving import PIPELINE, READY_TIMEOUT_S, record

if TYPE_CHECKING:
    from ml_pipelines_tests.serving.conftest import TrainedVersions

pytestmark = pytest.mark.timeout(600)

EXIT_TIMEOUT_S = 120  # a server that cannot serve must be gone by then (it takes about 10 s)
STOP_TIMEOUT_S = 30  # workers must follow a killed server within this
SWAP_TIMEOUT_S = 30  # the watcher polls every 0.5 s; a load takes a second or two


@pytest.fixture(scope="module")
def trained(trained_versions):
    """The two trained versions (serving/conftest.py); each test serves a copy (`platform`)."""
    return trained_versions


@dataclass
class Platform:
    root: Path

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "ML_PIPELINES_HOME": str(self.root), "BENTOML_HOME": str(self.root / "bentoml"),
            "ML_PIPELINES_WATCH_SECONDS": "0.5", "ML_PIPELINES_AUDIT": "on", "ML_PIPELINES_API_KEYS": "",
            "ML_PIPELINES_SERVING": "", **extra,
        }

    def model_file(self, version: str) -> Path:
        return self.root / "bentoml" / "models" / PIPELINE / version / "model.skops"

    def record_file(self, version: str) -> Path:
        return self.root / "registry" / PIPELINE / "versions" / version / "record.json"

    def promote(self, version: str) -> None:
        result = subprocess.run(
            [venv_executable("ml-pipelines"), "registry", "promote", PIPELINE, version, "--reason", "lifecycle test"],
            cwd=REPO_ROOT, env={**os.environ, **self.env()}, capture_output=True, text=True, timeout=120, check=False,
        )
        assert result.returncode == 0, result.stderr[-2000:]


@pytest.fixture
def platform(trained, tmp_path) -> Platform:
    return Platform(trained.copy_to(tmp_path / "platform"))


def serve_command(port: int) -> list[str]:
    return [venv_executable("ml-pipelines"), "serve", PIPELINE, "--host", "127.0.0.1", "--port", str(port)]


@contextlib.contextmanager
def serving(platform: Platform, tmp: Path, *, ready: bool = True) -> Iterator[tuple[ServerProcess, str]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with running(
        "model-service", serve_command(port), log_path=tmp / "serve.log", env=platform.env(),
        ready=f"{url}/readyz" if ready else None, ready_timeout=READY_TIMEOUT_S, stop_signal=signal.SIGKILL,
    ) as server:
        yield server, url


def port_is_free(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    with socket.socket() as sock:
        return sock.connect_ex((host, int(port))) != 0


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


# ------------------------------------------------------------------ killed


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killing_the_process_group_stops_every_worker(platform, tmp_path, sig):
    with serving(platform, tmp_path) as (server, url):
        processes = server.processes()
        workers = [p for p in processes if p.pid != server.pid]
        assert len(workers) >= 2, [" ".join(p.cmdline()) for p in processes]  # the gateway and the predictor
        # BentoML starts each worker in a session of its own: the group holds the server alone
        assert all(os.getsid(p.pid) != server.pgid for p in workers)
        try:
            os.killpg(server.pgid, sig)
            server.popen.wait(timeout=STOP_TIMEOUT_S)
            wait_until("every worker to stop", lambda: not [p for p in workers if _alive(p)], STOP_TIMEOUT_S)
            wait_until("the port to be free", lambda: port_is_free(url), STOP_TIMEOUT_S)
        finally:  # never leave a worker serving, whatever failed
            for proc in workers:
                with contextlib.suppress(psutil.Error):
                    proc.kill()


# ------------------------------------------------------------------ cannot start


def _corrupt(platform: Platform, trained: TrainedVersions) -> str:
    with platform.model_file(trained.second).open("ab") as handle:
        handle.write(b"tampered")
    return "checksum mismatch"


def _missing_model(platform: Platform, trained: TrainedVersions) -> str:
    shutil.rmtree(platform.model_file(trained.second).parent)
    return f"model {PIPELINE}:{trained.second} is not in the BentoML store"


def _no_champion(platform: Platform, trained: TrainedVersions) -> str:
    shutil.rmtree(platform.root)
    platform.root.mkdir()
    return f"{PIPELINE} has no champion to serve"


def _unloadable(platform: Platform, trained: TrainedVersions) -> str:
    """The bytes match the record, but they are no model (as when a library cannot read its own old files)."""
    model = platform.model_file(trained.second)
    model.write_bytes(model.read_bytes()[:1000])
    record_file = platform.record_file(trained.second)
    record = json.loads(record_file.read_text())
    record["artifacts"]["model.skops"] = hashlib.sha256(model.read_bytes()).hexdigest()
    record_file.write_text(json.dumps(record))
    return "BadZipFile"


BREAKS: dict[str, Callable[[Platform, TrainedVersions], str]] = {
    "checksum_mismatch": _corrupt, "model_missing_from_store": _missing_model,
    "no_champion": _no_champion, "model_does_not_load": _unloadable,
}


@pytest.mark.parametrize("case", sorted(BREAKS))
def test_a_version_that_cannot_be_served_ends_the_server_with_the_reason(platform, trained, tmp_path, case):
    reason = BREAKS[case](platform, trained)
    started = time.monotonic()
    with serving(platform, tmp_path, ready=False) as (server, _):
        try:
            code = server.popen.wait(timeout=EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            starts = server.log_tail(10**7).count("Initializing service error")
            pytest.fail(f"still running after {EXIT_TIMEOUT_S}s, {starts} failed worker starts:\n{server.log_tail()}")
        log = server.log_tail(10**6)
    assert code != 0, log[-3000:]
    assert reason in log, log[-3000:]
    if case != "no_champion":
        assert f"cannot serve {PIPELINE} {trained.second}" in log, log[-3000:]
    assert "Initializing service error" not in log, "no worker was started (and respawned)"
    assert time.monotonic() - started < EXIT_TIMEOUT_S


# ------------------------------------------------------------------ a champion that fails to load


def _champion_gauge(url: str) -> float | None:
    text = httpx.get(f"{url}/metrics", timeout=10, trust_env=False).text
    match = re.search(rf'^ml_pipelines_served_version_is_champion\{{pipeline="{PIPELINE}"\}} (\S+)$', text, re.MULTILINE)
    return float(match.group(1)) if match else None


def _predicted_version(url: str) -> str:
    response = httpx.post(f"{url}/predict", json={"records": [record(3)]}, timeout=60, trust_env=False)
    assert response.status_code == 200, response.text
    return response.json()["model_version"]


def test_a_champion_that_fails_to_load_is_not_served_and_readyz_says_why(platform, trained, tmp_path):
    model = platform.model_file(trained.first)
    good = model.read_bytes()
    with serving(platform, tmp_path) as (server, url):
        assert _predicted_version(url) == trained.second
        assert _champion_gauge(url) == 1.0
        model.write_bytes(good + b"tampered")
        platform.promote(trained.first)  # the alias moves to a version whose artifacts fail verification
        not_ready = wait_for_url(f"{url}/readyz", server=server, timeout=SWAP_TIMEOUT_S,
                                 ready=lambda r: r.status_code == 503)
        reason = not_ready.text
        for fragment in (f"serving {trained.second}", f"champion is {trained.first}", "failed to load",
                         "checksum mismatch"):
            assert fragment in reason, reason
        assert _champion_gauge(url) == 0.0
        assert _predicted_version(url) == trained.second  # the old version answers on
        assert httpx.get(f"{url}/livez", timeout=10, trust_env=False).status_code == 200
        # repaired in place: the champion loads on the next poll, and all is well again
        model.write_bytes(good)
        wait_for_url(f"{url}/readyz", server=server, timeout=SWAP_TIMEOUT_S)
        wait_until("the champion to be served", lambda: _predicted_version(url) == trained.first, SWAP_TIMEOUT_S)
        assert _champion_gauge(url) == 1.0
        assert server.log_tail(10**6).count(f"champion {trained.first} failed to load") == 1, "logged once, not per poll"


def test_a_predictor_that_cannot_restart_stops_the_server(platform, trained, tmp_path):
    """A predictor that dies (an OOM kill) while the champion cannot be loaded is not respawned forever."""
    with serving(platform, tmp_path) as (server, url):
        with platform.model_file(trained.first).open("ab") as handle:
            handle.write(b"tampered")
        platform.promote(trained.first)
        wait_for_url(f"{url}/readyz", server=server, timeout=SWAP_TIMEOUT_S, ready=lambda r: r.status_code == 503)
        predictor = next(p for p in server.processes() if "predictor" in " ".join(p.cmdline()))
        predictor.kill()
        try:
            server.popen.wait(timeout=EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            starts = server.log_tail(10**7).count("Initializing service error")
            pytest.fail(f"still running after {EXIT_TIMEOUT_S}s, {starts} failed worker starts:\n{server.log_tail()}")
        log = server.log_tail(10**6)
        assert f"cannot serve {PIPELINE} {trained.first}" in log and "stopping the server" in log, log[-3000:]
        wait_until("the port to be free", lambda: port_is_free(url), STOP_TIMEOUT_S)


# ------------------------------------------------------------------ a worker's parent, without its pid


def test_a_worker_re_parented_to_init_is_orphaned_unless_init_is_bentoml_serve(monkeypatch):
    """Outside `ml-pipelines serve` (no ML_PIPELINES_SERVE_PARENT) a worker whose parent is pid 1 was
    re-parented to init, and refuses to start; in a containerized bento, pid 1 is `bentoml serve` itself
    (the image's entrypoint execs it), and its workers start (prod/test_containers.py runs one)."""
    from ml_pipelines.serving import lifecycle

    commands = {1: ["/sbin/init"]}
    monkeypatch.setattr(lifecycle.os, "getppid", lambda: 1)
    monkeypatch.setattr(lifecycle, "Path", lambda path: _FakeProc(commands, path))
    assert lifecycle.parent_is_gone(None)
    commands[1] = ["/app/.venv/bin/python3", "/app/.venv/bin/bentoml", "serve", "/home/bentoml/bento", "--port", "3000"]
    assert not lifecycle.parent_is_gone(None)
    assert lifecycle.parent_is_gone(4242)  # a known parent is compared by its pid
    commands[1] = ["/app/.venv/bin/bentoml", "build"]
    assert lifecycle.parent_is_gone(None)
    monkeypatch.setattr(lifecycle.os, "getppid", lambda: 4242)
    assert not lifecycle.parent_is_gone(None) and not lifecycle.parent_is_gone(4242)


@dataclass
class _FakeProc:
    commands: dict[int, list[str]]
    path: str

    def read_bytes(self) -> bytes:
        pid = int(self.path.split("/")[2])
        if pid not in self.commands:
            raise FileNotFoundError(self.path)
        return "\0".join(self.commands[pid]).encode() + b"\0"
