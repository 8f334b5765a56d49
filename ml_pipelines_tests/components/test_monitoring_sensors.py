"""Monitoring on a real in-process Dagster instance: the landing sensor (dynamic
partitions, run keys, cursor), the monitor job, the drift sensor (run key, cursor,
cooldown), the prediction-log source, and the false-positive rate of the drift verdict."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from ml_pipelines.components import build_pipeline_defs
from ml_pipelines.core.drift import ReferenceProfile
from ml_pipelines.core.landing import land_batch
from ml_pipelines.core.monitoring import PROFILE_FILE, drift_against
from ml_pipelines.core.retrain_policy import DriftEvent, RetrainCursor, decide_retrain
from ml_pipelines.core.sources import load_source, read_file
from ml_pipelines.resources import local_resources
from ml_pipelines.settings import Settings
from ml_pipelines.spec import PipelineSpec, trusted_roots
from ml_pipelines_tests.helpers import materialize, registry_at
from ml_pipelines_tests.specs import INPUTS, NAME, make_spec, small_credit_attributes

pytestmark = pytest.mark.timeout(300)

BATCHES = f"{NAME}_production_batches"
DRIFT_KEY = dg.AssetKey([NAME, "drift_report"])


@dataclass
class World:
    spec: PipelineSpec
    root: Path
    instance: dg.DagsterInstance
    defs: dg.Definitions

    def tick(self, sensor: str, cursor: str | None) -> Tick:
        return tick(self.defs, self.instance, f"{NAME}_{sensor}", cursor)

    def monitor(self, partition: str) -> dg.ExecuteInProcessResult:
        job = self.defs.resolve_job_def(f"{NAME}_monitor_job")
        return job.execute_in_process(instance=self.instance, partition_key=partition, raise_on_error=False)

    def drift_records(self):
        return self.instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=DRIFT_KEY), limit=100,
                                                    ascending=True).records


@dataclass
class Tick:
    run_requests: list[dg.RunRequest]
    cursor: str | None
    skip_message: str | None
    dynamic_partitions_requests: list


def tick(defs: dg.Definitions, instance: dg.DagsterInstance, name: str, cursor: str | None) -> Tick:
    """One evaluation of a sensor, the way project_fully_featured tests them: call it with a
    context from build_sensor_context and read the run requests and the new cursor."""
    context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
    result = defs.resolve_sensor_def(name)(context)
    if isinstance(result, dg.SkipReason):
        return Tick([], cursor, result.skip_message, [])
    assert isinstance(result, dg.SensorResult), result
    return Tick(
        list(result.run_requests or []),
        result.cursor,
        result.skip_reason.skip_message if result.skip_reason else None,
        list(result.dynamic_partitions_requests or []),
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[World]:
    """credit_default trained once (a champion with a reference profile) on a persistent test instance."""
    root = tmp_path_factory.mktemp("monitoring") / "platform"
    root.mkdir()
    spec = make_spec(**small_credit_attributes())
    with pytest.MonkeyPatch.context() as patch, dg.instance_for_test() as instance:
        patch.setenv("ML_PIPELINES_HOME", str(root))
        trained = materialize(spec, root, instance)
        assert trained.success, trained.step_errors()
        assert trained.registry.get_alias(NAME, "champion") is not None
        defs = dg.Definitions.merge(build_pipeline_defs(spec), dg.Definitions(resources=local_resources(root)))
        yield World(spec, root, instance, defs)


def _landing_folder(root: Path) -> Path:
    return root / "landing" / NAME


def test_the_champion_carries_a_loadable_reference_profile(world: World, tmp_path):
    registry = registry_at(world.root)
    version = registry.get_alias(NAME, "champion")
    directory = registry.fetch_artifacts(NAME, version, tmp_path)
    profile = ReferenceProfile.from_bytes((directory / PROFILE_FILE).read_bytes())
    assert set(profile.numeric) == {"income", "age", "employment_years", "debt_ratio", "credit_lines", "dependents"}
    assert set(profile.categorical) == {"purpose", "home_ownership"}
    assert profile.prediction is not None  # P(default) on the training rows
    assert 0.0 < profile.numeric["income"].null_share < 0.15  # the generator leaves ~4% incomes missing


def test_landing_sensor_then_monitor_job_then_drift_sensor(world: World, monkeypatch):
    monkeypatch.setenv("ML_PIPELINES_HOME", str(world.root))
    folder = _landing_folder(world.root)

    # nothing landed yet: the folder does not even exist
    empty = world.tick("landing_sensor", None)
    assert not empty.run_requests
    assert "no new files" in (empty.skip_message or "")

    # ---- landing sensor: one partition and one run per new file
    stable = land_batch(world.spec, drift=0.0, rows=2000, seed=101, variables=Settings.from_env().variables)
    drifted = land_batch(world.spec, drift=1.0, rows=2000, seed=102, variables=Settings.from_env().variables)
    assert stable.parent == folder and drifted.parent == folder
    assert sorted(p.name for p in folder.iterdir()) == sorted([stable.name, drifted.name])  # no temp files left

    first = world.tick("landing_sensor", None)
    names = sorted([stable.name, drifted.name])
    mtimes = {p.name: p.stat().st_mtime for p in (stable, drifted)}
    assert [r.partition_key for r in first.run_requests] == names
    assert [r.run_key for r in first.run_requests] == [f"{n}@{mtimes[n]}" for n in names]
    assert json.loads(first.cursor) == mtimes
    (add_request,) = first.dynamic_partitions_requests
    assert add_request.partitions_def_name == BATCHES
    assert sorted(add_request.partition_keys) == names
    world.instance.add_dynamic_partitions(BATCHES, list(add_request.partition_keys))  # what the daemon does

    # the same files again: nothing to do, and the cursor stays put
    again = world.tick("landing_sensor", first.cursor)
    assert not again.run_requests
    assert "no new files" in again.skip_message
    assert json.loads(again.cursor) == mtimes

    # ---- monitor job, stable batch first: the drift sensor skips and consumes the report
    result = world.monitor(stable.name)
    assert result.success
    records = world.drift_records()
    assert len(records) == 1
    metadata = records[0].asset_materialization.metadata
    assert metadata["dataset_drifted"].value is False
    assert metadata["rows"].value == 2000
    assert records[0].asset_materialization.partition == stable.name
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == "no_drift" and check.passed

    quiet = world.tick("drift_sensor", None)
    assert not quiet.run_requests
    assert quiet.skip_message == "1 new drift report(s), none drifted"
    assert RetrainCursor.from_json(quiet.cursor) == RetrainCursor(records[0].storage_id, None)

    # ---- drifted batch: exactly one retrain request, keyed by the report
    result = world.monitor(drifted.name)
    assert result.success
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed  # a WARN check: the run still succeeds
    drifted_record = world.drift_records()[-1]
    metadata = drifted_record.asset_materialization.metadata
    assert metadata["dataset_drifted"].value is True
    assert metadata["share_drifted"].value >= 0.3
    assert {"income", "debt_ratio", "purpose"} <= set(metadata["drifted_columns"].value)

    before = time.time()
    loud = world.tick("drift_sensor", quiet.cursor)
    (request,) = loud.run_requests
    assert request.run_key == f"drift-{drifted_record.storage_id}"
    assert request.tags["ml_pipelines/trigger"] == "sensor"
    assert drifted.name in request.tags["ml_pipelines/reason"]
    assert request.job_name in (None, f"{NAME}_retrain_job")
    cursor = RetrainCursor.from_json(loud.cursor)
    assert cursor.last_storage_id == drifted_record.storage_id
    assert cursor.last_request_at is not None and before - 1 <= cursor.last_request_at <= time.time() + 1

    # the same cursor again: the report is consumed, nothing new
    repeat = world.tick("drift_sensor", loud.cursor)
    assert not repeat.run_requests
    assert repeat.skip_message == "no new drift reports"

    # ---- a second drifted batch inside the 6 h cooldown: reported, not requested
    second = land_batch(world.spec, drift=1.0, rows=2000, seed=103, variables=Settings.from_env().variables)
    third_tick = world.tick("landing_sensor", again.cursor)
    assert [r.partition_key for r in third_tick.run_requests] == [second.name]  # only the new file
    world.instance.add_dynamic_partitions(BATCHES, [second.name])
    assert world.monitor(second.name).success
    latest = world.drift_records()[-1]
    assert latest.asset_materialization.metadata["dataset_drifted"].value is True

    cooling = world.tick("drift_sensor", loud.cursor)
    assert not cooling.run_requests
    assert "cooldown" in cooling.skip_message and "next allowed" in cooling.skip_message
    after = RetrainCursor.from_json(cooling.cursor)
    assert after.last_storage_id == latest.storage_id  # advanced past the report
    assert after.last_request_at == cursor.last_request_at  # the cooldown clock is not reset


def test_a_rewritten_file_is_measured_again(world: World, monkeypatch, tmp_path):
    monkeypatch.setenv("ML_PIPELINES_HOME", str(tmp_path))
    path = land_batch(world.spec, drift=0.0, rows=100, seed=5, variables=Settings.from_env().variables)
    first = world.tick("landing_sensor", None)
    assert [r.partition_key for r in first.run_requests] == [path.name]
    stat = path.stat()
    os.utime(path, (stat.st_atime, stat.st_mtime + 10))
    second = world.tick("landing_sensor", first.cursor)
    (request,) = second.run_requests
    assert request.partition_key == path.name
    assert request.run_key == f"{path.name}@{stat.st_mtime + 10}"
    (add,) = second.dynamic_partitions_requests
    assert list(add.partition_keys) == [path.name]  # the instance in this test has not added it yet


def test_awkward_batch_is_reported_not_crashed(world: World, monkeypatch):
    """A landed file with a missing column, an all-null column and a new category."""
    monkeypatch.setenv("ML_PIPELINES_HOME", str(world.root))
    frame = load_source(world.spec.source.model_copy(update={"params": {"rows": 1500, "seed": 104}})).frame
    frame = frame.drop(columns=[world.spec.target, "home_ownership"])
    frame["credit_lines"] = np.nan
    frame.loc[:199, "purpose"] = "crypto"
    path = _landing_folder(world.root) / "batch-awkward.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    world.instance.add_dynamic_partitions(BATCHES, [path.name])
    result = world.monitor(path.name)
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    report = result.output_for_node(f"{NAME}__drift_report", "result")
    assert report.missing_columns == ["home_ownership"]
    by_column = {f.column: f for f in report.features}
    assert by_column["credit_lines"].note == "all values are null" and by_column["credit_lines"].drifted
    assert by_column["purpose"].new_categories == ["crypto"]
    assert report.prediction is None  # the model cannot score rows with a missing input
    materialization = result.asset_materializations_for_node(f"{NAME}__drift_report")[0]
    assert materialization.metadata["missing_columns"].value == ["home_ownership"]

    # every column present, two of them entirely empty: the champion still scores the rows
    frame = load_source(world.spec.source.model_copy(update={"params": {"rows": 800, "seed": 105}})).frame
    frame = frame.drop(columns=[world.spec.target]).assign(debt_ratio=np.nan, home_ownership=None)
    path = _landing_folder(world.root) / "batch-empty-columns.csv"
    frame.to_csv(path, index=False)
    world.instance.add_dynamic_partitions(BATCHES, [path.name])
    result = world.monitor(path.name)
    assert result.success
    report = result.output_for_node(f"{NAME}__drift_report", "result")
    assert report.missing_columns == []
    by_column = {f.column: f for f in report.features}
    for column in ("debt_ratio", "home_ownership"):
        assert by_column[column].note == "all values are null" and by_column[column].drifted
        assert by_column[column].null_share_current == 1.0
    assert report.share_drifted == pytest.approx(2 / 8)
    assert report.prediction is not None  # predictions drift is still measured


# ---------------------------------------------------------------- kind: prediction_log


def _write_audit_day(root: Path, day: str, frame: pd.DataFrame, writers: int = 2) -> int:
    """The serving audit layout: <root>/<pipeline>/<day>/<writer>.jsonl, one JSON object per prediction."""
    directory = root / "audit" / NAME / day
    directory.mkdir(parents=True, exist_ok=True)
    records = json.loads(frame.to_json(orient="records"))
    for w in range(writers):
        with (directory / f"host-{w}.jsonl").open("w") as handle:
            for i, record in enumerate(records[w::writers]):
                handle.write(json.dumps({
                    "request_id": f"r{w}-{i}", "index": 0, "caller": "key-1", "model_version": "v1",
                    "timestamp": f"{day}T10:00:00Z", "input": record,
                    "output": {"prediction": 0, "probabilities": {"0": 0.9, "1": 0.1}},
                }) + "\n")
    return len(records)


def test_prediction_log_days_are_measured(world: World):
    spec = make_spec(**small_credit_attributes(
        production_data={"kind": "prediction_log", "start_date": "2026-06-01"}, check_cron="15 * * * *"
    ))
    defs = dg.Definitions.merge(build_pipeline_defs(spec), dg.Definitions(resources=local_resources(world.root)))

    def day_of(drift: float, seed: int) -> pd.DataFrame:
        params = {"rows": 1200, "seed": seed, "drift": drift}
        return load_source(spec.source.model_copy(update={"params": params})).frame[list(INPUTS)]

    calm_rows = _write_audit_day(world.root, "2026-06-03", day_of(0.0, 201))
    _write_audit_day(world.root, "2026-06-04", day_of(1.0, 202))
    job = defs.resolve_job_def(f"{NAME}_monitor_job")
    with dg.instance_for_test() as instance:
        calm = job.execute_in_process(instance=instance, partition_key="2026-06-03")
        stormy = job.execute_in_process(instance=instance, partition_key="2026-06-04")
        missing = job.execute_in_process(instance=instance, partition_key="2026-06-05", raise_on_error=False)

    production = calm.asset_materializations_for_node(f"{NAME}__production_data")[0]
    assert production.metadata["origin"].value.endswith(f"audit/{NAME}/2026-06-03")
    calm_report = calm.output_for_node(f"{NAME}__drift_report", "result")
    assert calm_report.rows == calm_rows == 1200
    assert not calm_report.dataset_drifted
    assert calm_report.prediction is not None and not calm_report.prediction.drifted
    stormy_report = stormy.output_for_node(f"{NAME}__drift_report", "result")
    assert stormy_report.dataset_drifted
    assert stormy_report.prediction is not None and stormy_report.prediction.drifted  # riskier applicants
    assert not missing.success
    errors = [e.event_specific_data.error.to_string() for e in missing.all_events if e.is_step_failure]
    assert any("no predictions were logged on 2026-06-05" in error for error in errors), errors

    # the schedule asks for today's partition (no landing sensor for a prediction log)
    assert {s.name for s in defs.sensors} == {f"{NAME}_{s}_sensor" for s in ("drift", "labels", "performance")}
    schedule = defs.resolve_schedule_def(f"{NAME}_drift_check_schedule")
    assert schedule.cron_schedule == "15 * * * *"
    when = datetime(2026, 6, 4, 13, 15, tzinfo=UTC)
    with dg.instance_for_test() as instance:
        request = schedule(dg.build_schedule_context(instance=instance, scheduled_execution_time=when))
    assert isinstance(request, dg.RunRequest)
    assert request.partition_key == "2026-06-04"
    assert request.run_key == "2026-06-04@20260604T1315"


# ---------------------------------------------------------------- false positives


def test_undrifted_batches_rarely_request_a_retrain(world: World, monkeypatch, tmp_path):
    """30 batches from the training distribution through the real landing path (CSV), the
    champion's profile and model, and the retrain policy with no cooldown: at most one request."""
    monkeypatch.setenv("ML_PIPELINES_HOME", str(tmp_path))
    registry = registry_at(world.root)
    version = registry.get_alias(NAME, "champion")
    directory = registry.fetch_artifacts(NAME, version, tmp_path / "champion")
    profile = ReferenceProfile.from_bytes((directory / PROFILE_FILE).read_bytes())
    model = registry.load_model(NAME, version, trusted_roots(world.spec))

    cursor, requests, shares = RetrainCursor(), [], []
    for i in range(30):
        path = land_batch(world.spec, drift=0.0, rows=2000, seed=10_000 + i, variables=Settings.from_env().variables)
        batch = read_file("csv", str(path), {})
        report = drift_against(profile, batch, world.spec.monitoring.drift, model, world.spec.task)
        shares.append(report.share_drifted)
        decision = decide_retrain(
            [_event(i + 1, report)], cursor, now=1_800_000_000.0 + i, cooldown_hours=0
        )
        cursor = decision.cursor
        if decision.run_key is not None:
            requests.append(decision.run_key)
    assert len(requests) <= 1, f"{len(requests)} false retrain requests; drifted shares {shares}"
    # and the same path does flag a genuinely drifted batch
    path = land_batch(world.spec, drift=1.0, rows=2000, seed=99, variables=Settings.from_env().variables)
    report = drift_against(profile, read_file("csv", str(path), {}), world.spec.monitoring.drift, model,
                           world.spec.task)
    assert report.dataset_drifted
    assert np.mean(shares) < 0.1


def _event(storage_id: int, report) -> DriftEvent:
    return DriftEvent(storage_id, f"batch-{storage_id}", report.dataset_drifted, report.share_drifted)
