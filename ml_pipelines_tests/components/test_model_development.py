"""Model development end to end, in process: specs with torch, multiclass and
regression models materialize; the registry record carries the lineage; the
BentoML store holds the same version; the promotion gate blocks a worse
challenger and lets a better one become champion; the registry CLI reads and
moves what the runs wrote."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
import torch

from ml_pipelines import __version__
from ml_pipelines.cli import main
from ml_pipelines.core.records import VersionRecord
from ml_pipelines.core.registry import library_versions
from ml_pipelines.spec import PipelineSpec, trusted_roots
from ml_pipelines_tests.helpers import Materialized, bentoml_models, materialize
from ml_pipelines_tests.specs import make_spec, shipped_attributes

pytestmark = [pytest.mark.timeout(600), pytest.mark.usefixtures("one_thread")]

STAGES = {"raw_data", "validated_data", "features", "trained_model", "evaluation", "model_package"}


def _credit(rows: int = 2000) -> dict:
    return {"kind": "synthetic", "generator": "ml_pipelines.datasets.credit:generate",
            "params": {"rows": rows, "seed": 7}}


def _demo_spec(name: str) -> PipelineSpec:
    return make_spec(**shipped_attributes(name))


def _asset(m: Materialized, spec: PipelineSpec, stage: str):
    return m.result.asset_value(dg.AssetKey([spec.name, stage]))


def _only_version(m: Materialized, spec: PipelineSpec) -> VersionRecord:
    versions = m.registry.list_versions(spec.name)
    assert len(versions) == 1, [v.version for v in versions]
    return versions[0]


def _assert_bento_holds_the_version(root: Path, record: VersionRecord) -> None:
    """The BentoML model `<pipeline>:<version>` holds every artifact, byte for byte."""
    model = bentoml_models(root / "bentoml").get(f"{record.pipeline}:{record.version}")
    assert str(model.tag) == f"{record.pipeline}:{record.version}"
    base = Path(model.path)
    files = {
        p.relative_to(base).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in base.rglob("*")
        if p.is_file() and p.name != "model.yaml"
    }
    assert {name: files.get(name) for name in record.artifacts} == record.artifacts
    # besides the artifacts, at most a copy of the version record
    assert set(files) - set(record.artifacts) <= {"record.json"}
    if "record.json" in files:
        assert VersionRecord.from_json((base / "record.json").read_bytes()) == record


# ------------------------------------------------------------------ three kinds of pipeline


def test_torch_only_pipeline_materializes_with_full_lineage(platform_root):
    spec = make_spec(
        name="credit_torch",
        task="classification",
        target="defaulted",
        source=_credit(),
        features={"numeric": ["income", "age", "employment_years", "debt_ratio", "credit_lines"],
                  "categorical": ["purpose", "home_ownership"]},
        models=[{"name": "mlp", "framework": "torch", "hidden_layers": [32], "epochs": 12, "batch_size": 128,
                 "learning_rate": 0.01, "early_stopping_patience": 3}],
        selection={"cv_folds": 2},
        evaluation={"metrics": ["roc_auc", "accuracy"], "bootstrap_samples": 30, "gate": {"min": 0.6}},
    )
    with dg.instance_for_test() as instance:
        m = materialize(spec, platform_root, instance=instance)
        assert m.success, m.step_errors()
        messages = [entry.user_message for entry in instance.all_logs(m.result.run_id)]
    assert m.materialized() == STAGES
    assert m.check("beats_champion").passed
    # the trainer's per-epoch lines reach the Dagster run log
    assert any(msg.startswith("torch epoch 1/12: train_loss=") for msg in messages)
    assert any(msg.startswith("cv mlp fold 2/2: roc_auc=") for msg in messages)

    record = _only_version(m, spec)
    features = _asset(m, spec, "features")
    evaluation = _asset(m, spec, "evaluation")
    assert record.framework == "torch" and record.model_name == "mlp"
    assert record.metrics == evaluation.metrics and record.metrics["roc_auc"] > 0.6
    # lineage: run, data, spec, code, libraries
    assert record.trigger.run_id == m.result.run_id
    assert record.trigger.kind == "manual"
    assert record.data_version == features.data_version
    assert len(record.data_version) == 16 and int(record.data_version, 16) >= 0
    assert record.spec_hash == spec.spec_hash()
    assert record.code_version == f"{__version__}-{spec.spec_hash()}"
    assert record.libraries == library_versions()
    assert record.libraries["torch"] == torch.__version__
    # the model is a state_dict, a JSON config and a skops preprocessor: no pickle
    assert {"preprocess.skops", "torch_state.pt", "torch_config.json"} <= set(record.artifacts)
    assert "model.skops" not in record.artifacts
    assert not [name for name in record.artifacts if name.endswith((".pkl", ".pickle", ".joblib"))]
    assert {"plots/roc_curve.png", "plots/confusion_matrix.png"} <= set(record.artifacts)
    # every sha256 matches the bytes in the registry and in the BentoML store
    for name, digest in record.artifacts.items():
        data = m.registry.store.get(f"{spec.name}/versions/{record.version}/artifacts/{name}")
        assert hashlib.sha256(data).hexdigest() == digest, name
    _assert_bento_holds_the_version(platform_root, record)
    bento = bentoml_models(platform_root / "bentoml").get(f"{spec.name}:{record.version}")
    assert bento.info.metadata["run_id"] == m.result.run_id
    assert bento.info.metadata["data_version"] == record.data_version
    assert bento.info.labels["framework"] == "torch"
    # the registered model is the evaluated one
    assert m.registry.get_alias(spec.name, "champion") == record.version
    loaded = m.registry.load_model(spec.name, record.version, trusted_roots(spec))
    x_test, _ = features.xy("test")
    trained = _asset(m, spec, "trained_model").model
    np.testing.assert_array_equal(loaded.predict_proba(x_test), trained.predict_proba(x_test))


def test_multiclass_demo_with_string_labels_materializes(platform_root):
    spec = _demo_spec("wine_cultivar")
    m = materialize(spec, platform_root)
    assert m.success, m.step_errors()
    assert m.materialized() == STAGES
    record = _only_version(m, spec)
    assert record.task == "classification"
    assert record.classes == ["class_0", "class_1", "class_2"]
    assert record.metrics["f1_macro"] >= 0.8  # the spec's floor
    assert 0.5 < record.metrics["roc_auc"] <= 1.0
    selection = _asset(m, spec, "trained_model")
    assert {r.model_name for r in selection.results} == {"forest", "mlp"}
    assert all(len(r.fold_scores) == 3 for r in selection.results)
    loaded = m.registry.load_model(spec.name, record.version, trusted_roots(spec))
    x_test, y_test = _asset(m, spec, "features").xy("test")
    predictions = loaded.predict(x_test)
    assert set(predictions) <= set(record.classes)
    assert (predictions == y_test.to_numpy()).mean() >= 0.8
    _assert_bento_holds_the_version(platform_root, record)


def test_regression_pipeline_materializes(platform_root):
    spec = make_spec(
        name="diabetes_small",
        task="regression",
        target="progression",
        source={"kind": "synthetic", "generator": "ml_pipelines.datasets.sklearn_data:diabetes"},
        models=[
            {"name": "ridge", "estimator": "sklearn.linear_model.Ridge", "search": {"alpha": [0.1, 10.0]}},
            {"name": "mlp", "framework": "torch", "hidden_layers": [16], "epochs": 30, "batch_size": 32,
             "learning_rate": 0.01},
            {"name": "mean", "estimator": "sklearn.dummy.DummyRegressor"},
        ],
        selection={"cv_folds": 3},
        evaluation={"gate": {"metric": "r2", "min": 0.2}, "slices": ["sex"], "bootstrap_samples": 30},
    )
    m = materialize(spec, platform_root)
    assert m.success, m.step_errors()
    assert m.materialized() == STAGES
    record = _only_version(m, spec)
    assert record.classes is None
    assert set(record.metrics) == {"rmse", "mae", "r2"}
    assert record.metrics["r2"] > 0.2
    assert record.model_name != "mean"  # a real model beat the mean
    assert {"plots/residuals.png", "plots/predicted_vs_actual.png"} <= set(record.artifacts)
    evaluation = _asset(m, spec, "evaluation")
    assert {s.value for s in evaluation.slices} == {"female", "male"}
    assert evaluation.intervals["rmse"].low < evaluation.metrics["rmse"] < evaluation.intervals["rmse"].high
    assert m.check("beats_champion").metadata


# ------------------------------------------------------------------ the promotion gate


@dataclass
class GateStory:
    root: Path
    name: str
    first: Materialized
    first_version: str
    worse: Materialized
    versions_after_worse: list[str]
    champion_after_worse: str | None
    bento_after_worse: list[str]
    weaker: Materialized
    weaker_version: str
    better: Materialized
    better_version: str


def _gate_spec(models: list[dict]) -> PipelineSpec:
    return make_spec(
        name="credit_gate",
        task="classification",
        target="defaulted",
        source=_credit(),
        features={"numeric": ["income", "age", "employment_years", "debt_ratio", "credit_lines", "dependents"],
                  "categorical": ["purpose", "home_ownership"]},
        models=models,
        selection={"cv_folds": 2},
        # the gate's metric is not listed among the metrics: it is evaluated all the same
        evaluation={"metrics": ["accuracy"], "bootstrap_samples": 20,
                    "gate": {"metric": "roc_auc", "min": 0.55, "max_regression": 0.01}},
    )


@pytest.fixture(scope="module")
def gate_story(tmp_path_factory) -> GateStory:
    root = tmp_path_factory.mktemp("gate") / "platform"
    root.mkdir()
    name = "credit_gate"
    # 1. a real, if weak, model becomes the first champion
    first = materialize(_gate_spec([{"name": "stump", "estimator": "sklearn.tree.DecisionTreeClassifier",
                                     "params": {"max_depth": 2}}]), root)
    assert first.success, first.step_errors()
    first_version = first.registry.get_alias(name, "champion")
    # 2. the spec now names only a dummy: worse than the champion
    worse = materialize(_gate_spec([{"name": "dummy", "estimator": "sklearn.dummy.DummyClassifier"}]), root)
    versions_after_worse = [r.version for r in worse.registry.list_versions(name)]
    champion_after_worse = worse.registry.get_alias(name, "champion")
    bento_after_worse = sorted(str(m.tag) for m in bentoml_models(root / "bentoml").list(name))
    # 3. a weaker model that still meets the floor (a depth-1 stump, roc_auc about 0.63 vs 0.65)
    weaker = materialize(_gate_spec([{"name": "stump1", "estimator": "sklearn.tree.DecisionTreeClassifier",
                                      "params": {"max_depth": 1}}]), root)
    weaker_version = weaker.registry.list_versions(name)[-1].version
    # 4. a better model
    better = materialize(_gate_spec([{"name": "logreg", "estimator": "sklearn.linear_model.LogisticRegression",
                                      "params": {"max_iter": 500}}]), root)
    versions = better.registry.list_versions(name)
    better_version = versions[-1].version
    return GateStory(root, name, first, first_version, worse, versions_after_worse, champion_after_worse,
                     bento_after_worse, weaker, weaker_version, better, better_version)


def test_gate_keeps_a_candidate_below_the_floor_out_of_the_registry(gate_story):
    s = gate_story
    assert s.first_version is not None
    first_auc = s.first.registry.get_version(s.name, s.first_version).metrics["roc_auc"]
    assert first_auc > 0.6

    floor = s.worse.check("meets_floor")
    assert not floor.passed
    assert floor.description == "roc_auc 0.5000 fails the floor (at least 0.5500)"
    check = s.worse.check("beats_champion")
    assert not check.passed
    assert check.metadata  # the gate's numbers are on the check
    assert check.metadata["outcome"].value == "rejected"
    description = check.description or ""
    assert f"vs champion {s.first_version}: roc_auc 0.5000 vs {first_auc:.4f} on the same" in description
    assert "worse by" in description and "paired resamples" in description
    assert not s.worse.success
    assert "model_package" not in s.worse.materialized()
    assert "evaluation" in s.worse.materialized()
    # no new version, the champion unchanged, nothing new in the BentoML store
    assert s.versions_after_worse == [s.first_version]
    assert s.champion_after_worse == s.first_version
    assert s.bento_after_worse == [f"{s.name}:{s.first_version}"]


def test_a_candidate_that_meets_the_floor_but_loses_becomes_the_challenger(gate_story):
    s = gate_story
    assert s.weaker.success, s.weaker.step_errors()
    assert s.weaker.check("meets_floor").passed
    check = s.weaker.check("beats_champion")
    assert not check.passed
    assert check.metadata["outcome"].value == "challenger"
    assert "may be worse than the champion by more than 0.0100 at 95% confidence" in (check.description or "")
    assert check.metadata["loss_bound"].value > 0.01
    assert "model_package" in s.weaker.materialized()
    package = [e for e in s.weaker.result.get_asset_materialization_events() if e.asset_key.path[-1] == "model_package"]
    assert package[0].materialization.metadata["alias"].value == "challenger"
    record = s.weaker.registry.get_version(s.name, s.weaker_version)
    assert record.model_name == "stump1" and record.extra["gate"]["passed"] is False
    moves = s.weaker.registry.alias_history(s.name, "challenger")
    assert [(m.previous, m.version) for m in moves] == [(None, s.weaker_version)]
    assert "may be worse" in moves[0].reason  # the reason travels with the alias move
    # the champion stayed through it
    assert [(m.previous, m.version) for m in s.weaker.registry.alias_history(s.name, "champion")][0] == (
        None, s.first_version)


def test_a_better_challenger_passes_and_becomes_champion(gate_story):
    s = gate_story
    assert s.better.success, s.better.step_errors()
    check = s.better.check("beats_champion")
    assert check.passed
    assert f"vs champion {s.first_version}" in (check.description or "")
    assert "better by" in (check.description or "")
    assert "model_package" in s.better.materialized()
    record = s.better.registry.get_version(s.name, s.better_version)
    assert record.model_name == "logreg"
    assert set(record.metrics) == {"accuracy", "roc_auc"}
    assert record.metrics["roc_auc"] > s.first.registry.get_version(s.name, s.first_version).metrics["roc_auc"]
    assert record.extra["gate"]["passed"] is True
    assert record.extra["gate"]["champion_version"] == s.first_version
    assert record.extra["gate"]["comparison"]["rows"] == record.features.test_rows  # the paired rows
    assert [r.version for r in s.better.registry.list_versions(s.name)] == [
        s.first_version, s.weaker_version, s.better_version]
    assert s.better.registry.get_alias(s.name, "champion") == s.better_version
    moves = s.better.registry.alias_history(s.name, "champion")
    assert [(m.previous, m.version) for m in moves] == [(None, s.first_version), (s.first_version, s.better_version)]
    assert moves[-1].actor == f"run {s.better.result.run_id}"
    bento = sorted(str(m.tag) for m in bentoml_models(s.root / "bentoml").list(s.name))
    assert bento == sorted([f"{s.name}:{v}" for v in (s.first_version, s.weaker_version, s.better_version)])


# ------------------------------------------------------------------ the registry CLI


def test_registry_cli_lists_shows_promotes_and_rolls_back(gate_story, tmp_path, monkeypatch, capsys):
    s = gate_story
    root = tmp_path / "platform"
    shutil.copytree(s.root, root)  # the CLI moves aliases: leave the story's registry as it was
    monkeypatch.setenv("ML_PIPELINES_HOME", str(root))
    monkeypatch.delenv("ML_PIPELINES_ENV", raising=False)
    first, better = s.first_version, s.better_version

    def run(*argv: str) -> tuple[int, str]:
        code = main(list(argv))
        return code, capsys.readouterr().out

    code, out = run("registry", "list", s.name)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["version", "created_at", "model", "aliases", "metrics"]
    assert lines[1].split()[0] == first and lines[1].split()[2] == "stump" and lines[1].split()[3] == "-"
    weaker = s.weaker_version
    assert lines[2].split()[0] == weaker and lines[2].split()[2] == "stump1" and lines[2].split()[3] == "challenger"
    assert lines[3].split()[0] == better and lines[3].split()[2] == "logreg" and lines[3].split()[3] == "champion"
    assert "roc_auc=" in lines[3] and "accuracy=" in lines[3]
    assert len(lines) == 4

    record = s.better.registry.get_version(s.name, better)
    code, out = run("registry", "show", s.name, better)
    assert code == 0
    assert f"version:       {better}  aliases: champion" in out
    assert f"run_id:      {s.better.result.run_id}" in out
    assert f"data_hash:   {record.data_version}" in out
    assert f"spec_hash:   {record.spec_hash}" in out
    assert f"code:        {record.code_version}" in out
    assert "gate:          passed" in out
    for name, digest in record.artifacts.items():
        assert f"{name}  sha256:{digest}" in out

    code, out = run("registry", "promote", s.name, first, "--reason", "incident 42")
    assert code == 0
    assert out.strip() == f"{s.name}: champion {better} -> {first}"
    code, out = run("registry", "list", s.name)
    assert out.splitlines()[1].split()[3] == "champion" and out.splitlines()[3].split()[3] == "-"

    code, out = run("registry", "rollback", s.name)
    assert code == 0
    assert out.strip() == f"{s.name}: champion {first} -> {better} (rollback)"

    from ml_pipelines_tests.helpers import registry_at

    registry = registry_at(root)
    assert registry.get_alias(s.name, "champion") == better
    moves = registry.alias_history(s.name, "champion")
    assert [m.reason for m in moves[-2:]] == ["incident 42", f"rollback from {first}"]
    assert all(m.actor.startswith("cli:") for m in moves[-2:])

    code, out = run("registry", "show", s.name, "20260101-000000-abcdef")
    assert code == 2
    assert out.strip() == f"error: {s.name} has no version '20260101-000000-abcdef'"
    code, out = run("registry", "show", s.name, "no-such-version")
    assert code == 2
    assert out.startswith("error: version id 'no-such-version' is not valid: version ids look like ")
    code, out = run("registry", "list", "no_such_pipeline")
    assert code == 1 and out.strip() == "no_such_pipeline: no versions"
