"""The drift loop with nobody watching, under a real `dagster dev` (webserver + daemon):
a file lands -> the landing sensor adds a partition and runs the monitor job -> the drift
sensor reads the drift report -> on drift it requests the retrain job -> the promotion
gate decides whether the new version becomes champion."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster._core.events import DagsterEventType
from dagster._core.scheduler.instigation import InstigatorType, TickStatus
from dagster._core.storage.tags import RUN_KEY_TAG, SENSOR_NAME_TAG

from ml_pipelines.core.landing import land_batch
from ml_pipelines.core.retrain_policy import RetrainCursor
from ml_pipelines.settings import Settings
from ml_pipelines_tests import REPO_ROOT, servers
from ml_pipelines_tests.helpers import materialize, registry_at
from ml_pipelines_tests.specs import NAME, make_spec, small_credit_attributes

pytestmark = pytest.mark.timeout(600)  # every wait below has its own, shorter limit

DRIFT_SENSOR = f"{NAME}_drift_sensor"
DRIFT_KEY = dg.AssetKey([NAME, "drift_report"])
READY_TIMEOUT_S = 150
REPORT_TIMEOUT_S = 150  # landing sensor tick (15 s) + queued run + the run itself
RETRAIN_TIMEOUT_S = 240

# The workspace dagster dev loads: credit_default, small, with the in-process executor so
# each run is one process. Resources come from ML_PIPELINES_HOME, as in defs/resources.py.
DEFINITIONS = '''\
"""credit_default, small, for the drift loop test (written by test_drift_loop_e2e.py)."""

import json
import os

import dagster as dg

from ml_pipelines.components import build_pipeline_defs
from ml_pipelines.resources import local_resources
from ml_pipelines.spec import PipelineSpec

ATTRIBUTES = json.loads({attributes!r})


@dg.definitions
def defs() -> dg.Definitions:
    spec = PipelineSpec.model_validate(ATTRIBUTES)
    platform = dg.Definitions(
        resources=local_resources(os.environ["ML_PIPELINES_HOME"]), executor=dg.in_process_executor
    )
    return dg.Definitions.merge(build_pipeline_defs(spec), platform)
'''


def _wait(what: str, probe: Callable[[], Any], timeout: float, server: servers.ServerProcess) -> Any:
    """probe's first truthy answer, asked every 2 s while dagster dev runs."""
    return servers.wait_until(what, probe, timeout, server=server, interval=2.0)


def _drift_report_for(instance: dg.DagsterInstance, partition: str):
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=DRIFT_KEY, asset_partitions=[partition]), limit=1
    ).records
    return records[0] if records else None


def _drift_sensor_ticks(instance: dg.DagsterInstance):
    for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
        if state.instigator_name == DRIFT_SENSOR:
            return instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=50)
    return []


def _tick_past(instance: dg.DagsterInstance, storage_id: int):
    """The drift sensor's first completed tick whose cursor consumed the report `storage_id`."""
    completed = [t for t in _drift_sensor_ticks(instance) if t.status in (TickStatus.SKIPPED, TickStatus.SUCCESS)]
    consumed = [t for t in completed if t.cursor and RetrainCursor.from_json(t.cursor).last_storage_id >= storage_id]
    return min(consumed, key=lambda t: t.timestamp) if consumed else None


def _sensor_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    return list(instance.get_runs(filters=dg.RunsFilter(tags={SENSOR_NAME_TAG: DRIFT_SENSOR})))


def _finished(instance: dg.DagsterInstance, run_id: str) -> dg.DagsterRun | None:
    run = instance.get_run_by_id(run_id)
    return run if run is not None and run.is_finished else None


def test_drift_loop_runs_unattended_under_dagster_dev(tmp_path: Path, monkeypatch):
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    ml_home = tmp_path / "ml_pipelines_home"
    ml_home.mkdir()
    attributes = small_credit_attributes(retrain={"on_drift": True, "cooldown_hours": 0.05})
    spec = make_spec(**attributes)
    assert spec.monitoring.sensors_enabled  # both sensors start RUNNING, no human turns them on
    definitions = tmp_path / "drift_loop_defs.py"
    definitions.write_text(DEFINITIONS.format(attributes=json.dumps(attributes)))
    env = {"DAGSTER_HOME": str(dagster_home), "ML_PIPELINES_HOME": str(ml_home), "ML_PIPELINES_ENV": "local"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    started = time.monotonic()

    def phase(label: str) -> None:  # shown with -s, or in the report when the test fails
        print(f"[drift loop] {time.monotonic() - started:6.1f}s {label}", flush=True)

    port = servers.free_port()
    dagster_dev = servers.running(
        "dagster dev",
        [servers.venv_executable("dagster"), "dev", "-f", str(definitions), "-d", str(REPO_ROOT), "-h", "127.0.0.1",
         "-p", str(port)],
        log_path=tmp_path / "dagster_dev.log",
        env=env,
        ready=f"http://127.0.0.1:{port}/server_info",
        ready_timeout=READY_TIMEOUT_S,
        wait=False,  # the first champion trains while the server starts
    )
    with dagster_dev as server, dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        # the first champion, trained in process on the same instance while the server starts
        trained = materialize(spec, ml_home, instance)
        assert trained.success, trained.step_errors()
        registry = registry_at(ml_home)
        first_champion = registry.get_alias(NAME, "champion")
        assert first_champion is not None
        phase("champion trained")
        server.wait_ready()
        phase("dagster dev answers")

        # ---- (1) a batch like the training data: a report, and no retrain
        stable = land_batch(spec, drift=0.0, rows=2000, seed=301, variables=Settings.from_env().variables)
        record = _wait(f"drift report for {stable.name}", lambda: _drift_report_for(instance, stable.name),
                       REPORT_TIMEOUT_S, server)
        phase("stable report")
        metadata = record.asset_materialization.metadata
        assert metadata["dataset_drifted"].value is False, metadata["features"].value
        assert metadata["champion"].value == first_champion
        tick = _wait("a drift sensor tick past the stable report",
                     lambda: _tick_past(instance, record.storage_id), 90, server)
        assert tick.status == TickStatus.SKIPPED, tick
        assert "none drifted" in (tick.skip_reason or ""), tick.skip_reason
        assert _sensor_runs(instance) == []
        phase("drift sensor skipped the stable report")

        # ---- (2) a drifted batch: the sensor requests one retrain, and the gate decides
        drifted = land_batch(spec, drift=1.0, rows=2000, seed=302, variables=Settings.from_env().variables)
        report = _wait(f"drift report for {drifted.name}", lambda: _drift_report_for(instance, drifted.name),
                       REPORT_TIMEOUT_S, server)
        assert report.asset_materialization.metadata["dataset_drifted"].value is True
        requested = _wait("a retrain run requested by the drift sensor", lambda: _sensor_runs(instance),
                          90, server)
        (run,) = requested
        phase("retrain requested")
        assert run.job_name == f"{NAME}_retrain_job"
        assert run.tags[RUN_KEY_TAG] == f"drift-{report.storage_id}"
        assert run.tags["ml_pipelines/trigger"] == "sensor"
        run = _wait(f"retrain run {run.run_id} to finish", lambda: _finished(instance, run.run_id),
                    RETRAIN_TIMEOUT_S, server)
        phase(f"retrain finished: {run.status.value}")

        checks = [
            e.get_dagster_event().asset_check_evaluation_data
            for e in instance.all_logs(run.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
        ]
        gate = [c for c in checks if c.check_name == "beats_champion"]
        assert len(gate) == 1, f"the promotion gate did not decide in run {run.run_id}: {checks}"
        assert f"vs champion {first_champion}" in gate[0].description  # judged against the champion
        champion = registry.get_alias(NAME, "champion")
        if gate[0].passed:
            assert run.status == dg.DagsterRunStatus.SUCCESS, server.log_tail()
            assert champion != first_champion  # promoted
            version = registry.get_version(NAME, champion)
            assert version.trigger.run_id == run.run_id
            assert (version.trigger.kind, version.trigger.name) == ("sensor", DRIFT_SENSOR)
        else:  # a blocking check failure stops packaging: the champion stays
            assert run.status == dg.DagsterRunStatus.FAILURE
            assert champion == first_champion
        # one drifted report, one request: the sensor did not fire again
        assert len(_sensor_runs(instance)) == 1
