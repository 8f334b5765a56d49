"""The experiment history end to end: the trained_model step of real runs records every
candidate (the winner, one that lost on the score, one over selection.max_latency_ms,
one that fails to fit) in the registry's store, once per run: a step retried within the
run adds nothing, a second run adds a second record; `ml-pipelines experiments` lists
them; the asset's numeric metadata is what Dagster's Plots tab charts.

Runs against each store of the registry suite (core/conftest.py's STORES: local files,
and S3 on moto's real server), with the CLI reading what the settings point at, as a user's
shell would (ML_PIPELINES_HOME, or ML_PIPELINES_ENV=prod with the bucket and prefix)."""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
from sklearn.linear_model import LogisticRegression

from ml_pipelines.cli import main
from ml_pipelines.components import build_pipeline_defs
from ml_pipelines.core.experiments import ExperimentLog
from ml_pipelines.core.layout import registry_for
from ml_pipelines.definitions import apply_policies
from ml_pipelines.resources import S3RegistryResource, local_resources
from ml_pipelines.settings import Settings
from ml_pipelines.spec import PipelineSpec
from ml_pipelines_tests.core.conftest import STORES
from ml_pipelines_tests.specs import make_spec, shipped_attributes

pytestmark = [pytest.mark.timeout(600), pytest.mark.usefixtures("one_thread")]

NAME = "credit_experiments"
TRAINING = ("raw_data", "validated_data", "features", "trained_model")
MODELS = [
    {"name": "logreg", "estimator": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 500}},
    {"name": "dummy", "estimator": "sklearn.dummy.DummyClassifier"},  # loses on the score
    # 4 ms per row: over max_latency_ms, however busy the machine
    {"name": "slow", "estimator": "ml_pipelines_tests.components.test_experiment_history:SlowClassifier"},
    # scaled features are negative, which MultinomialNB refuses when it fits
    {"name": "nb", "estimator": "sklearn.naive_bayes.MultinomialNB"},
]


MAX_LATENCY_MS = 2.0  # far above what logreg and dummy take per row, far below slow's
SLOW_SECONDS_PER_ROW = 4e-3


class SlowClassifier(LogisticRegression):
    """A real classifier whose probabilities take 4 ms per row."""

    def predict_proba(self, X):
        time.sleep(SLOW_SECONDS_PER_ROW * len(X))
        return super().predict_proba(X)


def _spec(models: list[dict] = MODELS) -> PipelineSpec:
    attributes = shipped_attributes("credit_default")
    attributes["name"] = NAME
    attributes["source"]["params"]["rows"] = 800
    attributes["models"] = models
    attributes["selection"] = {"metric": "roc_auc", "cv_folds": 2, "max_latency_ms": MAX_LATENCY_MS}
    attributes.pop("monitoring")
    return make_spec(**attributes)


@dataclass
class Platform:
    root: Path
    resources: dict


@pytest.fixture(params=sorted(STORES))
def platform(request, tmp_path, monkeypatch) -> Platform:
    """Local resources under tmp_path with the registry in the store kind's place: the local
    folder, or a fresh prefix of a bucket on moto's S3 server. The settings point there too."""
    root = tmp_path / "platform"
    resources = local_resources(root)
    monkeypatch.setenv("ML_PIPELINES_HOME", str(root))
    if STORES[request.param].requires:
        bucket = request.getfixturevalue(STORES[request.param].requires)
        prefix = f"experiments-{secrets.token_hex(3)}"
        resources["registry"] = S3RegistryResource(bucket=bucket.name, prefix=prefix)
        monkeypatch.setenv("ML_PIPELINES_ENV", "prod")
        monkeypatch.setenv("ML_PIPELINES_S3_BUCKET", bucket.name)
        monkeypatch.setenv("ML_PIPELINES_S3_PREFIX", prefix)
    else:
        monkeypatch.setenv("ML_PIPELINES_ENV", "local")
    return Platform(root, resources)


class FailsOnceIOManager(dg.IOManager):
    """Values in memory; storing trained_model fails the first time, as an S3 blip would, so
    Dagster retries the step (the retry policy) after the experiment record was written."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, ...], object] = {}
        self.failed = False

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        if context.asset_key.path[-1] == "trained_model" and not self.failed:
            self.failed = True
            raise ConnectionError("the store went away for a moment")
        self.values[tuple(context.asset_key.path)] = obj

    def load_input(self, context: dg.InputContext) -> object:
        return self.values[tuple(context.asset_key.path)]


def _train(platform: Platform, *, flaky: bool = False, models: list[dict] = MODELS,
           succeeds: bool = True) -> dg.ExecuteInProcessResult:
    resources = dict(platform.resources)
    if flaky:
        resources["io_manager"] = dg.IOManagerDefinition.hardcoded_io_manager(FailsOnceIOManager())
    defs = dg.Definitions.merge(apply_policies(build_pipeline_defs(_spec(models))),
                                dg.Definitions(resources=resources))
    job = defs.resolve_job_def(f"{NAME}_retrain_job")
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(
            instance=instance, raise_on_error=False, asset_selection=[dg.AssetKey([NAME, s]) for s in TRAINING]
        )
    errors = [e.event_specific_data.error.message for e in result.all_events if e.is_step_failure]
    assert result.success == succeeds, errors
    return result


def _cli(capsys, *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["experiments", NAME, *args])
    return code, capsys.readouterr().out


def test_every_candidate_of_every_run_is_recorded_once_and_listed(platform: Platform, capsys):
    first = _train(platform, flaky=True)
    # the step ran twice: the first attempt recorded the run, then failed to store its output
    retries = [e for e in first.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    assert [e.step_key for e in retries] == [f"{NAME}__trained_model"]
    log = ExperimentLog(registry_for(Settings.from_env()).store)
    (record,) = log.records(NAME)
    assert record.run_id == first.run_id and record.outcome == "selected" and record.winner == "logreg"
    materialization = first.asset_materializations_for_node(f"{NAME}__trained_model")[-1]
    assert materialization.metadata["experiment_record"].value == "kept: an earlier attempt of this run wrote it"

    by_label = {c.label: c for c in record.candidates}
    assert list(by_label) == ["logreg", "dummy", "slow", "nb"]
    assert by_label["logreg"].status == "winner" and by_label["logreg"].cv_mean > 0.6
    assert (by_label["logreg"].model_params, by_label["logreg"].params) == ({"max_iter": 500}, {})
    assert {c.framework for c in record.candidates} == {"sklearn"}
    assert by_label["dummy"].status == "lost" and by_label["dummy"].reasons[0].startswith(
        "lost on cross-validated roc_auc: 0.5000 against logreg's ")
    slow = by_label["slow"]
    assert slow.status == "dropped" and len(slow.reasons) == 1
    assert slow.reasons[0].startswith("latency ") and slow.reasons[0].endswith(" ms/row > max_latency_ms 2.0")
    assert slow.latency_ms_per_row >= 3.5 and slow.cv_mean == pytest.approx(by_label["logreg"].cv_mean, abs=0.05)
    nb = by_label["nb"]
    assert nb.status == "dropped" and nb.cv_mean is None and "Negative values in data passed to MultinomialNB" in nb.error
    assert nb.reasons == [f"failed to fit: {nb.error}"]
    for candidate in (by_label["logreg"], by_label["dummy"], slow):
        assert len(candidate.fold_scores) == 2 and candidate.fit_seconds > 0 and candidate.size_mb > 0
    assert record.limits == {"max_latency_ms": 2.0, "max_size_mb": None}
    assert (record.cv_folds, record.metric, record.spec_hash) == (2, "roc_auc", _spec().spec_hash())

    # numeric metadata: Dagster's Plots tab charts these across materializations
    metadata = materialization.metadata
    assert isinstance(metadata["best_cv_score"], dg.FloatMetadataValue)
    assert metadata["best_cv_score"].value == pytest.approx(by_label["logreg"].cv_mean)
    for key in ("best_cv_std", "best_fit_seconds", "best_latency_ms_per_row", "best_size_mb", "cv_roc_auc_mean"):
        assert isinstance(metadata[key], dg.FloatMetadataValue), key
    counts = {k: metadata[k].value for k in ("candidates_evaluated", "candidates_failed", "candidates_dropped",
                                             "candidates_lost")}
    assert counts == {"candidates_evaluated": 4, "candidates_failed": 1, "candidates_dropped": 2,
                      "candidates_lost": 1}
    assert all(isinstance(metadata[k], dg.IntMetadataValue) for k in counts)

    second = _train(platform)
    assert [r.run_id for r in log.records(NAME)] == [first.run_id, second.run_id]
    assert second.asset_materializations_for_node(f"{NAME}__trained_model")[-1].metadata[
        "experiment_record"].value == "written by this attempt"

    code, out = _cli(capsys)
    assert code == 0
    blocks = out.strip().split("\n\n")
    assert len(blocks) == 2
    for block, run in zip(blocks, (first, second)):
        lines = block.splitlines()
        assert lines[0].startswith(f"run {run.run_id}  ") and lines[0].endswith("winner logreg"), lines[0]
        assert "roc_auc (2-fold, " in lines[0] and "limits: max_latency_ms 2.0" in lines[0]
        assert lines[1].split() == ["candidate", "params", "cv", "mean", "±", "std", "fit", "s", "ms/row", "size",
                                    "MB", "status"]
        rows = {line.split()[0]: line for line in lines[2:]}
        assert set(rows) == {"logreg", "dummy", "slow", "nb"}
        assert rows["logreg"].rstrip().endswith("winner") and " ± " in rows["logreg"]
        assert "  lost on cross-validated roc_auc: 0.5000 against logreg's 0." in rows["dummy"]
        assert "dropped: latency " in rows["slow"] and "> max_latency_ms 2.0" in rows["slow"]
        assert "dropped: failed to fit: models.nb: candidate nb failed on this data: Negative values" in rows["nb"]
        assert '{"max_iter": 500}' in rows["logreg"]  # every parameter it was built with

    code, out = _cli(capsys, "--last", "1")
    assert code == 0 and out.startswith(f"run {second.run_id}  ") and first.run_id not in out
    code, out = _cli(capsys, "--json")
    listed = json.loads(out)
    assert code == 0 and [r["run_id"] for r in listed] == [first.run_id, second.run_id]
    assert [c["status"] for c in listed[0]["candidates"]] == ["winner", "lost", "dropped", "dropped"]
    assert listed[0]["version"] is None  # trained only: nothing packaged


def test_a_run_that_selects_nothing_fails_and_is_recorded_with_why(platform: Platform, capsys):
    failed = _train(platform, models=[MODELS[2], MODELS[3]], succeeds=False)
    (failure,) = [e for e in failed.all_events if e.is_step_failure]
    assert failure.step_key == f"{NAME}__trained_model"
    assert "every candidate was dropped" in failure.event_specific_data.error.message
    (record,) = ExperimentLog(registry_for(Settings.from_env()).store).records(NAME)
    assert (record.run_id, record.outcome, record.winner) == (failed.run_id, "failed", None)
    assert record.error.startswith("SelectionError: every candidate was dropped: slow: latency ")
    assert [(c.label, c.status) for c in record.candidates] == [("slow", "dropped"), ("nb", "dropped")]
    code, out = _cli(capsys)
    assert code == 0
    assert out.splitlines()[0].endswith(f"selected nothing: {record.error}")


def test_the_cli_says_when_nothing_was_recorded_and_refuses_bad_names(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ML_PIPELINES_HOME", str(tmp_path))
    monkeypatch.setenv("ML_PIPELINES_ENV", "local")
    assert _cli(capsys) == (1, f"{NAME}: no training runs recorded\n")
    assert main(["experiments", "../etc"]) == 2
    assert "error: pipeline name '../etc' is not valid" in capsys.readouterr().out
    assert main(["experiments", NAME, "--last", "0"]) == 2  # a usage error
