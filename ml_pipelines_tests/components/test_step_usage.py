"""What each step used, as its materialization carries it (components/step_usage.py), and where
capacity goes (`ml-pipelines usage`, platform/utilisation), read back from a Dagster instance.

A tiny asset with known work (300 MiB allocated, 2 s of CPU spun) checks the figures through
Dagster; then the small credit_default chain is materialized on an instance in a temp
DAGSTER_HOME, and the command and the asset read that instance. (No `from __future__ import
annotations`: Dagster reads the assets' context annotations.)"""

import json

import dagster as dg
import numpy as np
import psutil
import pytest

from ml_pipelines.cli import main
from ml_pipelines.components.policies import fail_fast_on_bad_input, k8s_config
from ml_pipelines.components.utilisation import utilisation
from ml_pipelines.core import usage as u
from ml_pipelines.spec import StageResources
from ml_pipelines_tests.core.test_usage import ALLOCATED, MB, spin
from ml_pipelines_tests.helpers import materialize
from ml_pipelines_tests.specs import make_spec, small_credit_attributes

CHAIN = ("raw_data", "validated_data", "features", "trained_model", "evaluation", "model_package")
STAGES = ["evaluate", "features", "ingest", "package", "train", "validate"]
REQUEST = StageResources(cpu="1500m", memory="2Gi")


@dg.asset(op_tags={"dagster-k8s/config": k8s_config(REQUEST)}, owners=["team:ops"])
@fail_fast_on_bad_input
def known_work(context: dg.AssetExecutionContext) -> dg.Output[int]:
    block = np.ones(ALLOCATED // 8)
    spin(2.0)
    return dg.Output(int(block[0]))


@dg.asset(check_specs=[dg.AssetCheckSpec("positive", asset="streamed")])  # a second output, as drift_report has
@fail_fast_on_bad_input
def streamed(context: dg.AssetExecutionContext, known_work: int):
    yield dg.Output(known_work + 1)
    yield dg.AssetCheckResult(check_name="positive", passed=known_work + 1 > 0)


@dg.asset
@fail_fast_on_bad_input
def small_work(context: dg.AssetExecutionContext) -> int:
    return 1


def figures(event: dg.DagsterEvent) -> dict:
    return {k: v.value for k, v in event.materialization.metadata.items() if k.startswith("usage/")}


def materialized_usage(result: dg.ExecuteInProcessResult) -> dict[str, dict]:
    return {e.asset_key.path[-1]: figures(e) for e in result.get_asset_materialization_events()}


def test_a_step_reports_the_memory_and_cpu_of_its_known_work():
    before = psutil.Process().memory_info().rss
    with dg.instance_for_test() as instance:
        result = dg.materialize([known_work, streamed], instance=instance)
    usage = materialized_usage(result)
    work = usage["known_work"]
    assert work[u.PEAK_RSS_MIB] * 2**20 >= before + 300 * MB, (before, work)
    assert work[u.CPU_S] >= 1.5, work
    assert work[u.WALL_S] >= 2.0 * 0.95
    assert work[u.CPU_UTILISATION_PCT] == pytest.approx(100 * work[u.CPU_S] / work[u.WALL_S], rel=0.02)
    assert (work[u.REQUESTED_CPU_CORES], work[u.REQUESTED_MEMORY_MIB], work[u.REQUESTED_GPUS]) == (1.5, 2048.0, 0)
    assert work[u.OWNERS] == "team:ops"
    # a generator asset (with a check output too) is measured up to its Output; without a pod request, none
    assert u.WALL_S in usage["streamed"] and u.REQUESTED_CPU_CORES not in usage["streamed"]
    assert [e.passed for e in result.get_asset_check_evaluations()] == [True]
    # no GPU key without a GPU; on a GPU machine this step held none
    assert work.get(u.GPUS) == (None if u.nvml_probe() is None else 0)
    event = next(e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == "known_work")
    assert isinstance(event.materialization.metadata[u.CPU_S], dg.FloatMetadataValue)  # the Plots tab charts it


def test_usage_interval_zero_records_nothing(monkeypatch):
    monkeypatch.setenv("ML_PIPELINES_USAGE_INTERVAL", "0")
    with dg.instance_for_test() as instance:
        result = dg.materialize([small_work], instance=instance)
    assert materialized_usage(result) == {"small_work": {}}


@pytest.fixture(scope="module")
def measured_chain(tmp_path_factory):
    """The small credit_default chain materialized once on an instance in its own DAGSTER_HOME."""
    root = tmp_path_factory.mktemp("usage")
    home = root / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        outcome = materialize(make_spec(**small_credit_attributes(rows=2000)), root / "platform", instance=instance)
    assert outcome.success, outcome.step_errors()
    return home, materialized_usage(outcome.result)


def test_every_chain_step_carries_its_usage_and_its_pods_request(measured_chain):
    _, usage = measured_chain
    assert sorted(usage) == sorted(CHAIN)
    for asset, found in usage.items():
        assert found[u.WALL_S] > 0 and found[u.PEAK_RSS_MIB] > 100, (asset, found)
        assert found[u.REQUESTED_MEMORY_MIB] == 1024.0 and found[u.REQUESTED_CPU_CORES] == 0.5, (asset, found)
        assert found[u.OWNERS] == "team:risk-ml"
    assert usage["model_package"][u.CPU_S] > 0.5  # the bento build, a child process, is the step's


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_usage_command_sums_the_instance_per_stage_and_suggests_resources(measured_chain, monkeypatch, capsys):
    home, usage = measured_chain
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    code, out, err = run_cli(capsys, "usage", "--since", "1d", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert [g["group"] for g in report["groups"]] == STAGES
    assert report["total"]["steps"] == 6
    assert report["total"]["cpu_hours"] == pytest.approx(sum(f[u.CPU_S] for f in usage.values()) / 3600, rel=1e-6)
    wall_hours = sum(f[u.WALL_S] for f in usage.values()) / 3600
    assert report["total"]["cpu_hours_requested"] == pytest.approx(0.5 * wall_hours, rel=1e-6)
    suggestions = {s["stage"]: s for s in report["suggestions"]}
    assert sorted(suggestions) == STAGES and {s["pipeline"] for s in suggestions.values()} == {"credit_default"}
    package = suggestions["package"]
    assert u.parse_quantity(package["memory"]) >= usage["model_package"][u.PEAK_RSS_MIB] * 1.25 * 2**20

    code, out, _ = run_cli(capsys, "usage", "--by", "owner")
    assert code == 0 and "\nteam:risk-ml  6 " in out and "suggested resources" in out, out


def test_usage_command_refuses_bad_input(measured_chain, monkeypatch, capsys, tmp_path):
    home, _ = measured_chain
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    code, _, err = run_cli(capsys, "usage", "--since", "a week")
    assert code == 2 and "error: --since: 'a week' is not a duration" in err
    code, _, err = run_cli(capsys, "usage", "--by", "team")
    assert code == 2 and "'team' is not one of" in err
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "nowhere"))
    code, _, err = run_cli(capsys, "usage")
    assert code == 2 and f"error: no Dagster instance at {tmp_path / 'nowhere'}" in err


def test_platform_utilisation_asset_reports_the_day(measured_chain):
    home, _ = measured_chain
    with dg.DagsterInstance.from_config(str(home)) as instance:
        result = dg.materialize([utilisation], instance=instance)
    [event] = result.get_asset_materialization_events()
    metadata = event.materialization.metadata
    assert metadata["steps"].value == 6
    assert metadata["cpu_hours"].value > 0 and metadata["cpu_hours_requested"].value > 0
    assert "| train |" in metadata["by_stage"].value and "| credit_default |" in metadata["by_pipeline"].value
    assert 'package: {cpu: "' in metadata["suggested_resources"].value
    assert metadata["plot"].value.startswith("![CPU-hours and memory per stage](data:image/png;base64,")
