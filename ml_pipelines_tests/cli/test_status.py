"""`ml-pipelines status` against a real (SQLite) Dagster instance and local registry in a known
state: nothing yet, a champion, a failed run behind it, a running run, a drift report and a
production performance measurement; the exit status a cron job or a probe reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
from dagster._core.events import DagsterEvent
from dagster._core.remote_origin import GrpcServerCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
import pytest

from ml_pipelines.cli import main
from ml_pipelines.cli.status import CHECKS
from ml_pipelines.components import build_pipeline_defs
from ml_pipelines_tests import REPO_ROOT
from ml_pipelines_tests.helpers import materialize
from ml_pipelines_tests.ops_location import ops_attributes
from ml_pipelines_tests.specs import make_spec, shipped_attributes, shipped_names

pytestmark = [pytest.mark.timeout(600), pytest.mark.usefixtures("one_thread")]

PIPELINE = "diabetes_progression"  # a shipped spec: status reads the specs of the project
MONITORED = "credit_default"  # a shipped spec with production data and labels


@pytest.fixture
def homes(tmp_path, monkeypatch) -> tuple[Path, Path]:
    dagster_home, ml_home = tmp_path / "dagster_home", tmp_path / "ml_home"
    dagster_home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    monkeypatch.setenv("ML_PIPELINES_HOME", str(ml_home))
    monkeypatch.setenv("ML_PIPELINES_ENV", "local")
    return dagster_home, ml_home


def status_json(capsys, *pipelines: str) -> tuple[int, dict]:
    code = main(["status", "--json", *pipelines])
    return code, json.loads(capsys.readouterr().out)


def test_the_checks_status_reads_are_every_check_the_factory_builds():
    built = set()
    for name in shipped_names():
        defs = build_pipeline_defs(make_spec(**shipped_attributes(name)))
        for definition in [*(defs.assets or []), *(defs.asset_checks or [])]:
            built |= {(key.asset_key.path[-1], key.name) for key in definition.check_keys}
    assert built == set(CHECKS)


def _origin(job: str) -> RemoteJobOrigin:
    """Where a queued run's job lives (Dagster requires one for a queued run; nothing reads it here)."""
    location = GrpcServerCodeLocationOrigin(host="127.0.0.1", port=4266, location_name="ml_pipelines")
    return RemoteJobOrigin(RemoteRepositoryOrigin(location, "__repository__"), job)


def test_status_reports_each_state_and_exits_non_zero_when_a_human_is_needed(homes, capsys):
    dagster_home, ml_home = homes
    code, report = status_json(capsys, PIPELINE)
    assert code == 1 and report["ok"] is False
    assert report["pipelines"][0]["problems"] == [
        "no champion: no model has passed the promotion gate, so none can be served"]

    quick = ops_attributes(PIPELINE)
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        trained = materialize(make_spec(**quick), ml_home, instance)
        assert trained.success, trained.step_errors()
        code, report = status_json(capsys, PIPELINE)
        health = report["pipelines"][0]
        assert code == 0 and health["problems"] == [], health
        assert health["champion"] == trained.registry.get_alias(PIPELINE, "champion")
        assert 0 <= health["champion_age_s"] < 300
        assert health["last_success"]["run_id"] == trained.result.run_id
        assert {(c["asset"], c["check"]) for c in health["checks"] if c["passed"]} >= {
            ("raw_data", "matches_expectation_suite"), ("evaluation", "meets_floor")}

        quick["evaluation"]["gate"]["min"] = 0.99  # no model reaches it: the blocking floor fails
        failed = materialize(make_spec(**quick), ml_home, instance)
        assert not failed.success
        running = dg.DagsterRun(job_name=f"{PIPELINE}_retrain_job", status=dg.DagsterRunStatus.STARTED,
                                tags={"pipeline": PIPELINE})
        queued = dg.DagsterRun(job_name="__ASSET_JOB", tags={"pipeline": PIPELINE},
                               remote_job_origin=_origin("__ASSET_JOB"))
        elsewhere = dg.DagsterRun(job_name="other_retrain_job", tags={"pipeline": "other"},
                                  remote_job_origin=_origin("other_retrain_job"))
        for run in (running, queued, elsewhere):
            instance.add_run(run)
        for run in (queued, elsewhere):  # what the queued run coordinator does with a submitted run
            instance.report_dagster_event(DagsterEvent.job_enqueue(run), run_id=run.run_id)
        code, report = status_json(capsys, PIPELINE)
    health = report["pipelines"][0]
    assert code == 1
    assert health["champion"] is not None  # the champion stays; the failed candidate was not registered
    assert health["running"] == [running.run_id] and health["queued"] == [queued.run_id]
    assert health["problems"][0] == f"the last run failed: {failed.result.run_id} ({PIPELINE}_retrain_job)"
    assert health["problems"][1].startswith("blocking check evaluation/meets_floor fails: "), health["problems"]

    assert main(["status", PIPELINE]) == 1
    text = capsys.readouterr().out
    assert f"== {PIPELINE}: NEEDS A HUMAN" in text and "runs:          1 queued, 1 running" in text
    assert "evaluation/meets_floor (blocking) fails" in text
    assert "drift:         not monitored (no monitoring.production_data)" in text


def test_drift_and_a_performance_drop_need_a_human_and_cron_sees_the_exit_status(homes, capsys):
    dagster_home, _ = homes
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        # what drift_report and production_performance record (components/monitoring), for one batch
        for asset, metadata in (("drift_report", {"dataset_drifted": True, "share_drifted": 0.5}),
                                ("production_performance", {"performance_holds": False,
                                                            "performance_reason": "roc_auc 0.61 < floor 0.65"})):
            instance.report_runless_asset_event(
                dg.AssetMaterialization(asset_key=[MONITORED, asset], partition="batch-7.csv", metadata=metadata))
    code, report = status_json(capsys, MONITORED)
    problems = report["pipelines"][0]["problems"]
    assert code == 1
    assert "drift: the latest drift report (batch batch-7.csv) found drift" in problems
    assert "production performance is below its floor: roc_auc 0.61 < floor 0.65" in problems

    done = subprocess.run([sys.executable, "-m", "ml_pipelines.cli", "status", MONITORED], cwd=REPO_ROOT,
                          env={**os.environ}, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1, done.stderr
    assert "drift:         DRIFT, 50% of features (batch batch-7.csv" in done.stdout
    assert "performance:   BELOW ITS FLOOR: roc_auc 0.61 < floor 0.65" in done.stdout


def test_an_unknown_pipeline_is_a_usage_error(homes, capsys):
    assert main(["status", "no_such_pipeline"]) == 2
    assert "no pipeline 'no_such_pipeline'" in capsys.readouterr().err
