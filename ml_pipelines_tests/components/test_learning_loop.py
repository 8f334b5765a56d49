"""The learning loop in process on a real Dagster instance: shifted batches and their
labels land; labels join them; production performance drops and its check fails; the
retrain learns from the labelled window, holds out the newest labelled rows, and its
new champion is clearly better on the shifted world; a retrain with nothing new makes
no version."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
from sklearn.metrics import roc_auc_score

from ml_pipelines.components import build_pipeline_defs
from ml_pipelines.core.champion import CHAMPION
from ml_pipelines.core.landing import land_labelled_batch, write_labels
from ml_pipelines.core.models import predict
from ml_pipelines.datasets.credit import generate
from ml_pipelines.definitions import apply_policies
from ml_pipelines.resources import local_resources
from ml_pipelines.settings import Settings
from ml_pipelines.spec import PipelineSpec
from ml_pipelines_tests import REPO_ROOT
from ml_pipelines_tests.helpers import Materialized, materialize, registry_at
from ml_pipelines_tests.specs import NAME, make_spec, small_credit_attributes

pytestmark = [pytest.mark.timeout(600), pytest.mark.usefixtures("one_thread")]

BATCHES = f"{NAME}_production_batches"
SHIFTED_ROWS = 2000
MARGIN = 0.05  # the retrained champion beats the old one on a fresh shifted sample by at least this


@dataclass
class Loop:
    spec: PipelineSpec
    root: Path
    instance: dg.DagsterInstance
    defs: dg.Definitions
    first: str
    batches: list[str]
    label_runs: list[dg.ExecuteInProcessResult]
    retrain: Materialized
    again: Materialized

    def run(self, job: str, partition: str) -> dg.ExecuteInProcessResult:
        return self.defs.resolve_job_def(f"{NAME}_{job}").execute_in_process(
            instance=self.instance, partition_key=partition, raise_on_error=False
        )


def _spec() -> PipelineSpec:
    attributes = small_credit_attributes(
        performance={"metric": "roc_auc", "max_drop": 0.05, "min_rows": 200},
        retrain={"on_drift": True, "on_performance": True, "cooldown_hours": 0, "window": {"batches": 2}},
    )
    return make_spec(**attributes)


@pytest.fixture(scope="module")
def loop(tmp_path_factory) -> Iterator[Loop]:
    root = tmp_path_factory.mktemp("learning") / "platform"
    root.mkdir()
    spec = _spec()
    with pytest.MonkeyPatch.context() as patch, dg.instance_for_test() as instance:
        patch.setenv("ML_PIPELINES_HOME", str(root))
        variables = Settings.from_env().variables
        first = materialize(spec, root, instance)
        assert first.success, first.step_errors()
        defs = dg.Definitions.merge(apply_policies(build_pipeline_defs(spec)),
                                    dg.Definitions(resources=local_resources(root)))
        loop = Loop(spec, root, instance, defs, first.registry.get_alias(NAME, CHAMPION), [], [], None, None)
        for seed in (301, 302):
            batch = land_labelled_batch(spec, drift=1.0, rows=SHIFTED_ROWS, seed=seed, variables=variables)
            write_labels(spec, batch, variables=variables)
            instance.add_dynamic_partitions(BATCHES, [batch.path.name])
            assert loop.run("monitor_job", batch.path.name).success
            loop.label_runs.append(loop.run("labels_job", batch.path.name))
            loop.batches.append(batch.path.name)
        loop.retrain = materialize(spec, root, instance)
        loop.again = materialize(spec, root, instance)
        yield loop


def _materialization(result: dg.ExecuteInProcessResult, asset: str) -> dg.AssetMaterialization:
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == asset]
    return event.materialization


def test_labels_join_every_row_of_a_shifted_batch(loop: Loop):
    for run in loop.label_runs:
        assert run.success, [e.event_specific_data.error.message for e in run.all_events if e.is_step_failure]
        metadata = _materialization(run, "labels").metadata
        assert metadata["labelled_rows"].value == SHIFTED_ROWS
        assert metadata["missing_labels"].value == 0
        assert metadata["label_delay_hours"].value >= 0


def test_production_performance_drops_and_its_check_fails(loop: Loop):
    run = loop.label_runs[-1]
    metadata = _materialization(run, "production_performance").metadata
    assert metadata["champion"].value == loop.first
    (check,) = [e for e in run.get_asset_check_evaluations() if e.check_name == "performance_holds"]
    assert not check.passed, check.description
    assert "worse than the holdout" in check.description
    assert metadata["metric/roc_auc"].value < registry_at(loop.root).get_version(NAME, loop.first).metrics["roc_auc"] - 0.05
    assert "plot/roc_auc_over_time" in metadata


def test_the_retrain_learns_from_the_window_and_says_so(loop: Loop):
    assert loop.retrain.success, loop.retrain.step_errors()
    registry = registry_at(loop.root)
    champion = registry.get_alias(NAME, CHAMPION)
    assert champion != loop.first
    record = registry.get_version(NAME, champion)
    assert [b.batch for b in record.provenance.batches] == loop.batches
    assert [b.rows for b in record.provenance.batches] == [SHIFTED_ROWS, SHIFTED_ROWS]
    assert record.provenance.source_rows == 3000
    features = _materialization(loop.retrain.result, "features").metadata
    assert features["holdout"].value == "newest production rows"
    assert features["test_rows"].value == round(0.2 * 2 * SHIFTED_ROWS)


def test_the_new_champion_is_clearly_better_on_the_shifted_world(loop: Loop):
    registry = registry_at(loop.root)
    fresh = generate(rows=5000, seed=999, drift=1.0)  # never landed
    x, y = fresh.drop(columns=[loop.spec.target]), fresh[loop.spec.target]

    def auc(version: str) -> float:
        model = registry.load_model(NAME, version)
        return roc_auc_score(y, predict(model, x, "classification")[1][:, 1])

    old, new = auc(loop.first), auc(registry.get_alias(NAME, CHAMPION))
    assert new > old + MARGIN, (old, new)


def test_a_retrain_with_nothing_new_makes_no_version(loop: Loop):
    assert loop.again.success, loop.again.step_errors()
    assert "model_package" not in loop.again.materialized()
    assert len(registry_at(loop.root).list_versions(NAME)) == 2
    observations = [e for e in loop.again.result.all_events if e.event_type_value == "ASSET_OBSERVATION"]
    assert any("nothing changed" in str(e.event_specific_data.asset_observation.metadata) for e in observations)


# ------------------------------------------------------------------ the sensors, tick by tick


def _tick(loop: Loop, sensor: str, cursor: str | None = None) -> dg.SensorResult | dg.SkipReason:
    context = dg.build_sensor_context(instance=loop.instance, cursor=cursor, definitions=loop.defs,
                                      resources=local_resources(loop.root))
    return loop.defs.resolve_sensor_def(f"{NAME}_{sensor}")(context)


def test_the_performance_sensor_requests_a_retrain_for_the_drop(loop: Loop):
    result = _tick(loop, "performance_sensor")
    (request,) = result.run_requests
    assert request.tags["ml_pipelines/retrain_reason"] == "performance"
    assert "performance drop in partition" in request.tags["ml_pipelines/reason"]
    assert request.run_key.startswith("performance-")
    again = _tick(loop, "performance_sensor", result.cursor)  # consumed: nothing new
    assert not again.run_requests and "no new performance reports" in again.skip_reason.skip_message


def test_the_labels_sensor_labels_new_batches_and_skips_complete_ones(loop: Loop, monkeypatch):
    monkeypatch.setenv("ML_PIPELINES_HOME", str(loop.root))
    quiet = _tick(loop, "labels_sensor")
    assert not quiet.run_requests, "every landed batch is fully labelled"
    variables = Settings.from_env().variables
    batch = land_labelled_batch(loop.spec, drift=1.0, rows=300, seed=303, variables=variables)
    loop.instance.add_dynamic_partitions(BATCHES, [batch.path.name])
    before_labels = _tick(loop, "labels_sensor", quiet.cursor)
    assert [r.partition_key for r in before_labels.run_requests] == [batch.path.name]  # never labelled yet
    write_labels(loop.spec, batch, variables=variables)
    after_labels = _tick(loop, "labels_sensor", before_labels.cursor)  # the label files changed
    assert [r.partition_key for r in after_labels.run_requests] == [batch.path.name]
    assert after_labels.run_requests[0].run_key != before_labels.run_requests[0].run_key


# ------------------------------------------------------------------ promote --from-shadow (last: it moves aliases)


def test_promote_from_shadow_follows_the_gate_on_fresh_production_rows(loop: Loop, monkeypatch):
    monkeypatch.setenv("ML_PIPELINES_HOME", str(loop.root))
    variables = Settings.from_env().variables
    batch = land_labelled_batch(loop.spec, drift=1.0, rows=1500, seed=404, variables=variables)
    write_labels(loop.spec, batch, variables=variables)
    loop.instance.add_dynamic_partitions(BATCHES, [batch.path.name])
    assert loop.run("monitor_job", batch.path.name).success
    assert loop.run("labels_job", batch.path.name).success
    registry = registry_at(loop.root)
    learned = registry.get_alias(NAME, CHAMPION)

    def cli(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "ml_pipelines.cli", "registry", *argv], capture_output=True,
                              text=True, env={**os.environ}, cwd=REPO_ROOT, timeout=300)

    # the old champion as challenger: worse on the shifted world, so it stays a challenger
    registry.set_alias(NAME, "challenger", loop.first, actor="test", reason="shadow test")
    refused = cli("promote", NAME, "--from-shadow")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert f"challenger {loop.first} does not win against champion {learned}" in refused.stdout
    assert "1 labelled batch(es) neither learned from" in refused.stdout
    assert registry.get_alias(NAME, CHAMPION) == learned
    # roles swapped: the retrained model as challenger wins and becomes champion
    registry.set_alias(NAME, CHAMPION, loop.first, actor="test", reason="shadow test")
    registry.set_alias(NAME, "challenger", learned, actor="test", reason="shadow test")
    promoted = cli("promote", NAME, "--from-shadow")
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    assert f"champion {loop.first} -> {learned} (from shadow)" in promoted.stdout
    assert registry.get_alias(NAME, CHAMPION) == learned
    assert registry.alias_history(NAME, CHAMPION)[-1].reason.startswith("promoted from shadow: challenger")
    wrong = cli("promote", NAME, "v1", "--from-shadow")
    assert wrong.returncode == 2 and "give no VERSION" in wrong.stderr
