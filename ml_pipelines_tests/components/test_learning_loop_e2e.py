"""The learning loop with nobody watching, under a real `dagster dev` (webserver + daemon)
and a real `bentoml serve` answering requests the whole time:

- a stable batch and its labels land: a drift report, labels, production performance,
  and no retrain;
- two batches of a shifted world land, their labels a moment later: drift, then a
  performance drop; the sensors request retraining, the retrain learns from the labelled
  window, and the new champion is clearly better on a fresh sample of that world;
- the service switches to it without a failed request, and `ml-pipelines trace` from a
  request the new champion answered reaches the batches it learned from.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from sklearn.metrics import roc_auc_score

from ml_pipelines.core.champion import CHAMPION
from ml_pipelines.core.models import predict
from ml_pipelines.datasets.credit import generate
from ml_pipelines.settings import Settings
from ml_pipelines_tests import REPO_ROOT, servers
from ml_pipelines_tests.helpers import materialize, registry_at
from ml_pipelines_tests.learning_world import (
    BATCH_ROWS,
    DEFINITIONS,
    SENSORS,
    Traffic,
    land,
    latest,
    loop_attributes,
    quiet,
    retrain_runs,
    skipped_past,
)
from ml_pipelines_tests.specs import INPUTS, NAME, make_spec

pytestmark = pytest.mark.timeout(900)  # every wait below has its own, shorter limit

READY_TIMEOUT_S = 150
SENSOR_INTERVAL_S = 3  # each hop of the loop waits for a sensor tick (default 15 s)
STEP_TIMEOUT_S = 240  # a sensor tick (SENSOR_INTERVAL_S), a queued run and the run itself
MARGIN = 0.05  # the new champion beats the old one on a fresh shifted sample by at least this

def test_the_loop_learns_the_shifted_world_unattended(tmp_path: Path, monkeypatch):
    dagster_home, ml_home = tmp_path / "dagster_home", tmp_path / "ml_pipelines_home"
    dagster_home.mkdir()
    ml_home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    attributes = loop_attributes()
    attributes["monitoring"]["sensor_interval_seconds"] = SENSOR_INTERVAL_S
    spec = make_spec(**attributes)
    assert spec.monitoring.sensors_enabled  # every sensor starts RUNNING, no human turns them on
    definitions = tmp_path / "learning_loop_defs.py"
    definitions.write_text(DEFINITIONS.format(attributes=json.dumps(attributes)))
    env = {"DAGSTER_HOME": str(dagster_home), "ML_PIPELINES_HOME": str(ml_home), "ML_PIPELINES_ENV": "local"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    variables = Settings.from_env().variables
    started = time.monotonic()

    def phase(label: str) -> None:  # shown with -s, or in the report when the test fails
        print(f"[learning loop] {time.monotonic() - started:6.1f}s {label}", flush=True)

    # the instance's SQLite schema is created here, once: the webserver, the daemon and this test
    # creating it at the same moment race in alembic ("more than one head")
    with dg.DagsterInstance.from_config(str(dagster_home)):
        pass
    port, serve_port = servers.free_port(), servers.free_port()
    dagster_dev = servers.running(
        "dagster dev",
        [servers.venv_executable("dagster"), "dev", "-f", str(definitions), "-d", str(REPO_ROOT), "-h", "127.0.0.1",
         "-p", str(port)],
        log_path=tmp_path / "dagster_dev.log", env=env, ready=f"http://127.0.0.1:{port}/server_info",
        ready_timeout=READY_TIMEOUT_S, wait=False,  # the first champion trains while the server starts
    )
    with dagster_dev as server, dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        trained = materialize(spec, ml_home, instance)
        assert trained.success, trained.step_errors()
        registry = registry_at(ml_home)
        first = registry.get_alias(NAME, CHAMPION)
        phase("first champion trained")
        serve = servers.running(
            "ml-pipelines serve",
            [sys.executable, "-m", "ml_pipelines.cli", "serve", NAME, "--host", "127.0.0.1", "--port", str(serve_port)],
            log_path=tmp_path / "serve.log", env={**env, "ML_PIPELINES_WATCH_SECONDS": "0.5"},
            ready=f"http://127.0.0.1:{serve_port}/readyz", ready_timeout=READY_TIMEOUT_S,
        )
        with serve:
            server.wait_ready()
            phase("dagster dev and the model service answer")
            rows = json.loads(generate(rows=50, seed=505)[list(INPUTS)].to_json(orient="records"))
            traffic = Traffic(f"http://127.0.0.1:{serve_port}", rows)
            client = threading.Thread(target=traffic.run, daemon=True)
            client.start()
            try:
                _stable_world_requests_no_retrain(spec, instance, server, variables, phase)
                final = _shifted_world_is_learned(spec, instance, server, registry, first, variables, phase)
                servers.wait_until("the service to answer with the new champion",
                                   lambda: traffic.served_by(final), 60, server=server)
                phase("the service answers with the new champion")
            finally:
                traffic.stop.set()
                client.join(timeout=30)
        assert traffic.answers and not traffic.failures(), traffic.failures()[:5]
        versions = [v for status, v, _ in traffic.answers if status == 200]
        assert versions[0] == first and versions[-1] == final
        _trace_reaches_the_batches(traffic.served_by(final), registry.get_version(NAME, final), env)


def _wait(what: str, probe: Callable[[], Any], server, timeout: float = STEP_TIMEOUT_S) -> Any:
    return servers.wait_until(what, probe, timeout, server=server, interval=2.0)


def _stable_world_requests_no_retrain(spec, instance, server, variables, phase) -> None:
    stable = land(spec, variables, drift=0.0, seed=401)
    report = _wait(f"drift report for {stable}", lambda: latest(instance, "drift_report", stable), server)
    assert report.asset_materialization.metadata["dataset_drifted"].value is False
    performance = _wait(f"production performance for {stable}",
                        lambda: latest(instance, "production_performance", stable), server)
    metadata = performance.asset_materialization.metadata
    assert metadata["labelled_rows"].value == BATCH_ROWS and metadata["performance_holds"].value is True
    _wait("the drift sensor to skip the stable report",
          lambda: skipped_past(instance, SENSORS["drift"], report.storage_id), server, 90)
    _wait("the performance sensor to skip the stable report",
          lambda: skipped_past(instance, SENSORS["performance"], performance.storage_id), server, 90)
    assert retrain_runs(instance) == []
    phase("stable world: reports, labels, no retrain")


def _shifted_world_is_learned(spec, instance, server, registry, first, variables, phase) -> str:
    shifted = [land(spec, variables, drift=1.0, seed=seed) for seed in (402, 403)]
    phase(f"shifted batches landed: {shifted}")

    def learned() -> str | None:
        champion = registry.get_alias(NAME, CHAMPION)
        if champion == first:
            return None
        batches = [b.batch for b in registry.get_version(NAME, champion).provenance.batches]
        return champion if set(shifted) <= set(batches) and quiet(instance) else None

    final = _wait("a champion that learned from both shifted batches, and every run done", learned, server, 600)
    phase(f"new champion {final}")
    runs = retrain_runs(instance)
    assert runs and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs), [(r.run_id, r.status) for r in runs]
    assert {r.tags["ml_pipelines/retrain_reason"] for r in runs} <= {"drift", "performance"}
    record = registry.get_version(NAME, final)
    assert record.trigger.reason in {"drift", "performance"} and record.trigger.kind == "sensor"
    fresh = generate(rows=5000, seed=999, drift=1.0)  # a sample of the shifted world that never landed
    x, y = fresh.drop(columns=[spec.target]), fresh[spec.target]

    def auc(version: str) -> float:
        return roc_auc_score(y, predict(registry.load_model(NAME, version), x, "classification")[1][:, 1])

    old, new = auc(first), auc(final)
    phase(f"roc_auc on the shifted world: old champion {old:.3f}, new champion {new:.3f}")
    assert new > old + MARGIN, (old, new)
    return final


def _trace_reaches_the_batches(request_id: str, record, env: dict[str, str]) -> None:
    done = subprocess.run([sys.executable, "-m", "ml_pipelines.cli", "trace", request_id],
                          capture_output=True, text=True, env={**os.environ, **env}, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    learned = [line for line in done.stdout.splitlines() if line.startswith("learned from")]
    assert learned, done.stdout
    for batch in record.provenance.batches:
        assert f"{batch.batch} ({batch.rows} rows)" in learned[0]
