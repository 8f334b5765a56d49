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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest
from dagster._core.scheduler.instigation import InstigatorType, TickStatus
from dagster._core.storage.tags import SENSOR_NAME_TAG
from sklearn.metrics import roc_auc_score

from ml_pipelines.core.champion import CHAMPION
from ml_pipelines.core.landing import land_labelled_batch, write_labels
from ml_pipelines.core.models import predict
from ml_pipelines.core.retrain_policy import RetrainCursor
from ml_pipelines.datasets.credit import generate
from ml_pipelines.settings import Settings
from ml_pipelines_tests import REPO_ROOT, servers
from ml_pipelines_tests.helpers import materialize, registry_at
from ml_pipelines_tests.specs import INPUTS, NAME, make_spec, small_credit_attributes

pytestmark = pytest.mark.timeout(900)  # every wait below has its own, shorter limit

SENSORS = {s: f"{NAME}_{s}_sensor" for s in ("drift", "performance", "labels")}
READY_TIMEOUT_S = 150
STEP_TIMEOUT_S = 240  # a sensor tick (15 s), a queued run and the run itself
MARGIN = 0.05  # the new champion beats the old one on a fresh shifted sample by at least this
SHIFTED_ROWS = 2000

DEFINITIONS = '''\
"""credit_default, small, for the learning loop test (written by test_learning_loop_e2e.py)."""

import json
import os

import dagster as dg

from ml_pipelines.components import build_pipeline_defs
from ml_pipelines.definitions import apply_policies
from ml_pipelines.resources import local_resources
from ml_pipelines.spec import PipelineSpec

ATTRIBUTES = json.loads({attributes!r})


@dg.definitions
def defs() -> dg.Definitions:
    spec = PipelineSpec.model_validate(ATTRIBUTES)
    platform = dg.Definitions(
        resources=local_resources(os.environ["ML_PIPELINES_HOME"]), executor=dg.in_process_executor
    )
    return dg.Definitions.merge(apply_policies(build_pipeline_defs(spec)), platform)
'''


@dataclass
class Traffic:
    """A client that keeps asking the service while the loop runs."""

    url: str
    rows: list[dict[str, Any]]
    answers: list[tuple[int, str | None, str | None]] = field(default_factory=list)  # status, version, request id
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(timeout=30, trust_env=False) as client:
            i = 0
            while not self.stop.is_set():
                body = {"records": [self.rows[i % len(self.rows)]]}
                try:
                    response = client.post(f"{self.url}/predict", json=body)
                    answer = response.json() if response.status_code == 200 else {}
                    self.answers.append((response.status_code, answer.get("model_version"), answer.get("request_id")))
                except httpx.HTTPError as exc:
                    self.answers.append((0, None, str(exc)))
                i += 1
                time.sleep(0.1)

    def failures(self) -> list[tuple]:
        return [a for a in self.answers if a[0] != 200]

    def served_by(self, version: str) -> str | None:
        return next((rid for status, v, rid in reversed(self.answers) if status == 200 and v == version), None)


def _spec_attributes() -> dict[str, Any]:
    return small_credit_attributes(
        performance={"metric": "roc_auc", "max_drop": 0.05, "min_rows": 200},
        retrain={"on_drift": True, "on_performance": True, "cooldown_hours": 0, "window": {"batches": 2}},
    )


def _ticks(instance: dg.DagsterInstance, sensor: str):
    for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
        if state.instigator_name == sensor:
            return instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=100)
    return []


def _skipped_past(instance: dg.DagsterInstance, sensor: str, storage_id: int):
    """The sensor's first skipped tick whose cursor consumed the report `storage_id`."""
    ticks = [t for t in _ticks(instance, sensor) if t.status == TickStatus.SKIPPED and t.cursor
             and RetrainCursor.from_json(t.cursor).last_storage_id >= storage_id]
    return min(ticks, key=lambda t: t.timestamp) if ticks else None


def _latest(instance: dg.DagsterInstance, asset: str, partition: str):
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey([NAME, asset]), asset_partitions=[partition]), limit=1
    ).records
    return records[0] if records else None


def _retrain_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    return [r for r in instance.get_runs(filters=dg.RunsFilter(job_name=f"{NAME}_retrain_job"))
            if r.tags.get(SENSOR_NAME_TAG)]


def _quiet(instance: dg.DagsterInstance) -> bool:
    busy = instance.get_runs(filters=dg.RunsFilter(statuses=[
        dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
        dg.DagsterRunStatus.STARTED]))
    return not busy


def test_the_loop_learns_the_shifted_world_unattended(tmp_path: Path, monkeypatch):
    dagster_home, ml_home = tmp_path / "dagster_home", tmp_path / "ml_pipelines_home"
    dagster_home.mkdir()
    ml_home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    attributes = _spec_attributes()
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


def _land(spec, variables, drift: float, seed: int):
    batch = land_labelled_batch(spec, drift=drift, rows=SHIFTED_ROWS, seed=seed, variables=variables)
    time.sleep(1.0)  # the ground truth arrives a moment after the batch
    write_labels(spec, batch, variables=variables)
    return batch.path.name


def _stable_world_requests_no_retrain(spec, instance, server, variables, phase) -> None:
    stable = _land(spec, variables, drift=0.0, seed=401)
    report = _wait(f"drift report for {stable}", lambda: _latest(instance, "drift_report", stable), server)
    assert report.asset_materialization.metadata["dataset_drifted"].value is False
    performance = _wait(f"production performance for {stable}",
                        lambda: _latest(instance, "production_performance", stable), server)
    metadata = performance.asset_materialization.metadata
    assert metadata["labelled_rows"].value == SHIFTED_ROWS and metadata["performance_holds"].value is True
    _wait("the drift sensor to skip the stable report",
          lambda: _skipped_past(instance, SENSORS["drift"], report.storage_id), server, 90)
    _wait("the performance sensor to skip the stable report",
          lambda: _skipped_past(instance, SENSORS["performance"], performance.storage_id), server, 90)
    assert _retrain_runs(instance) == []
    phase("stable world: reports, labels, no retrain")


def _shifted_world_is_learned(spec, instance, server, registry, first, variables, phase) -> str:
    shifted = [_land(spec, variables, drift=1.0, seed=seed) for seed in (402, 403)]
    phase(f"shifted batches landed: {shifted}")

    def learned() -> str | None:
        champion = registry.get_alias(NAME, CHAMPION)
        if champion == first:
            return None
        batches = [b.batch for b in registry.get_version(NAME, champion).provenance.batches]
        return champion if set(shifted) <= set(batches) and _quiet(instance) else None

    final = _wait("a champion that learned from both shifted batches, and every run done", learned, server, 600)
    phase(f"new champion {final}")
    runs = _retrain_runs(instance)
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
