"""The pipeline spec (DESIGN section 3): every error names the bad field's path,
both through pydantic directly and through Dagster's real defs.yaml load path,
and loading a spec never reads data."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest
import yaml
from dagster.components.testing import create_defs_folder_sandbox
from pydantic import ValidationError

from ml_pipelines.components import MLPipeline, build_pipeline_defs
from ml_pipelines.resources import local_resources
from ml_pipelines.spec import PipelineSpec, format_validation_error
from ml_pipelines_tests.specs import PIPELINES_DIR, shipped_attributes, small_credit_attributes

COMPONENT_TYPE = "ml_pipelines.components.MLPipeline"
STAGES = {"raw_data", "validated_data", "features", "trained_model", "evaluation", "model_package"}

# A generator the load-path test can spy on: it must never be called while loading.
GENERATOR_CALLS: list[dict[str, Any]] = []


def counting_generator(**params: Any) -> pd.DataFrame:
    GENERATOR_CALLS.append(params)
    return pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": [0, 1, 0, 1]})


def minimal() -> dict[str, Any]:
    """The five required fields and nothing else."""
    return {
        "name": "loans",
        "task": "classification",
        "target": "defaulted",
        "source": {"kind": "csv", "path": "data/loans.csv"},
        "models": [{"name": "logreg", "estimator": "sklearn.linear_model.LogisticRegression"}],
    }


def spec_error(attributes: dict[str, Any]) -> str:
    """The formatted error for attributes that must not validate."""
    with pytest.raises(ValidationError) as info:
        PipelineSpec.model_validate(attributes)
    return format_validation_error(info.value, "defs.yaml")


def with_changes(**changes: Any) -> dict[str, Any]:
    attributes = minimal()
    attributes.update(copy.deepcopy(changes))
    return attributes


# ---------------------------------------------------------------- valid specs


def test_minimal_spec_gets_documented_defaults():
    spec = PipelineSpec.model_validate(minimal())
    assert spec.selection_metric == "roc_auc"
    assert spec.gate_metric == "roc_auc"
    assert spec.selection.cv_folds == 5
    assert spec.data_schema.on_failure == "block"
    assert spec.data_schema.infer is True
    assert spec.features.split.by == "random"
    assert spec.models[0].framework == "sklearn"
    regression = PipelineSpec.model_validate(with_changes(task="regression", models=[
        {"name": "ridge", "estimator": "sklearn.linear_model.Ridge"}]))
    assert regression.selection_metric == "rmse"
    assert regression.evaluation_metrics == ["rmse", "mae", "r2"]


def test_spec_hash_ignores_key_order_but_not_content():
    attributes = minimal()
    reordered = dict(reversed(list(attributes.items())))
    assert PipelineSpec.model_validate(attributes).spec_hash() == PipelineSpec.model_validate(reordered).spec_hash()
    changed = with_changes(target="other")
    assert PipelineSpec.model_validate(changed).spec_hash() != PipelineSpec.model_validate(attributes).spec_hash()


def test_sensor_interval_reaches_every_sensor_and_leaves_the_spec_hash_alone():
    attributes = shipped_attributes("credit_default")
    default = PipelineSpec.model_validate(attributes)
    attributes["monitoring"]["sensor_interval_seconds"] = 3
    quick = PipelineSpec.model_validate(attributes)
    assert default.monitoring.sensor_interval_seconds == 15
    assert quick.spec_hash() == default.spec_hash()  # how often sensors look retrains nothing
    intervals = {s.name: s.minimum_interval_seconds for s in build_pipeline_defs(quick).sensors}
    assert len(intervals) >= 4 and set(intervals.values()) == {3}, intervals
    attributes["monitoring"]["sensor_interval_seconds"] = 0
    with pytest.raises(ValidationError, match="sensor_interval_seconds"):
        PipelineSpec.model_validate(attributes)


def test_demo_specs_validate():
    files = sorted(PIPELINES_DIR.glob("*/defs.yaml"))
    assert len(files) >= 2
    for file in files:
        document = yaml.safe_load(file.read_text())
        assert document["type"] == COMPONENT_TYPE
        spec = PipelineSpec.model_validate(document["attributes"])
        assert spec.name == file.parent.name


# ---------------------------------------------------------------- errors name the field path


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"retries": 3}, "defs.yaml: retries: Extra inputs are not permitted"),
        (
            {"schema": {"columns": {"age": {"minimum": 18}}}},
            "schema.columns.age.minimum: Extra inputs are not permitted",
        ),
        ({"features": {"numerc": ["age"]}}, "features.numerc: Extra inputs are not permitted"),
        ({"source": {"kind": "csv", "path": "x.csv", "sep": ";"}}, "source.csv.sep: Extra inputs are not permitted"),
    ],
    ids=["top-level", "schema-column", "features", "source"],
)
def test_unknown_key_names_its_path(changes, expected):
    assert expected in spec_error(with_changes(**changes))


@pytest.mark.parametrize(
    ("changes", "path", "words"),
    [
        ({"selection": {"cv_folds": "many"}}, "selection.cv_folds", "valid integer"),
        ({"task": "ranking"}, "task", "'classification' or 'regression'"),
        ({"owners": "team:risk"}, "owners", "valid list"),
        ({"schema": {"columns": {"age": {"min": "zero"}}}}, "schema.columns.age.min", "valid number"),
        (
            {"models": [{"name": "mlp", "framework": "torch", "epochs": "ten"}]},
            "models.0.torch.epochs",
            "valid integer",
        ),
        ({"features": {"split": {"test_size": 1.5}}}, "features.split.test_size", "less than 1"),
    ],
    ids=["cv_folds", "task", "owners", "column-min", "torch-epochs", "test-size"],
)
def test_wrong_type_names_its_path(changes, path, words):
    message = spec_error(with_changes(**changes))
    assert f"defs.yaml: {path}: " in message
    assert words in message


@pytest.mark.parametrize("field", ["name", "task", "target", "source", "models"])
def test_missing_required_field_names_it(field):
    attributes = minimal()
    del attributes[field]
    assert spec_error(attributes) == f"defs.yaml: {field}: Field required"


def test_empty_models_list_is_an_error():
    assert "models: List should have at least 1 item" in spec_error(with_changes(models=[]))


def test_unknown_estimator_names_model_and_dotted_path():
    message = spec_error(with_changes(models=[
        {"name": "logreg", "estimator": "sklearn.linear_model.LogisticRegression"},
        {"name": "magic", "estimator": "sklearn.ensemble.MagicForest"},
    ]))
    assert message.startswith("defs.yaml: models.1.sklearn.estimator: ")
    assert "estimator 'sklearn.ensemble.MagicForest' cannot be imported" in message


def test_unknown_module_in_estimator_generator_and_function():
    message = spec_error(with_changes(models=[{"name": "x", "estimator": "sklearn.no_such_module.Model"}]))
    assert "models.0.sklearn.estimator: estimator 'sklearn.no_such_module.Model' cannot be imported" in message
    message = spec_error(with_changes(source={"kind": "synthetic", "generator": "ml_pipelines.no_such:make"}))
    assert "source.synthetic.generator: generator 'ml_pipelines.no_such:make' cannot be imported" in message
    derived = [{"name": "d", "function": "ml_pipelines.no_such:f", "inputs": ["a"]}]
    message = spec_error(with_changes(features={"derived": derived}))
    assert "features.derived.0.function: function 'ml_pipelines.no_such:f' cannot be imported" in message


@pytest.mark.parametrize(
    ("features", "expected"),
    [
        ({"numeric": ["age", "income", "age"]}, "feature 'age' is listed twice (in `numeric`)"),
        (
            {"numeric": ["age"], "categorical": ["age"]},
            "feature 'age' is listed twice (in `numeric` and in `categorical`)",
        ),
        (
            {"numeric": ["ratio"], "derived": [{"name": "ratio", "expr": "a / b"}]},
            "feature 'ratio' is listed twice (in `numeric` and in `derived`)",
        ),
    ],
    ids=["same-group", "numeric-and-categorical", "numeric-and-derived"],
)
def test_feature_listed_twice(features, expected):
    message = spec_error(with_changes(features=features))
    assert message.startswith("defs.yaml: features: ")
    assert expected in message


def test_target_cannot_be_a_feature():
    assert "features: the target 'defaulted' cannot also be a feature" in spec_error(
        with_changes(features={"numeric": ["age", "defaulted"]})
    )


@pytest.mark.parametrize("owner", ["risk team", "team:", "someone@nowhere", "team:risk ml"])
def test_bad_owner_names_its_index(owner):
    message = spec_error(with_changes(owners=["team:risk-ml", owner]))
    assert message.startswith("defs.yaml: owners.1: String should match pattern")


def test_good_owners_are_accepted():
    spec = PipelineSpec.model_validate(with_changes(owners=["team:risk-ml", "ana.lyst@example.com"]))
    assert spec.owners == ["team:risk-ml", "ana.lyst@example.com"]


@pytest.mark.parametrize(
    ("task", "changes", "expected"),
    [
        (
            "classification",
            {"selection": {"metric": "rmse"}},
            "selection.metric: 'rmse' is not a classification metric",
        ),
        (
            "classification",
            {"evaluation": {"metrics": ["roc_auc", "r2"]}},
            "evaluation.metrics[1]: 'r2' is not a classification metric",
        ),
        (
            "classification",
            {"evaluation": {"gate": {"metric": "mae"}}},
            "evaluation.gate.metric: 'mae' is not a classification metric",
        ),
        ("regression", {"selection": {"metric": "roc_auc"}}, "selection.metric: 'roc_auc' is not a regression metric"),
    ],
    ids=["selection", "evaluation-list", "gate", "regression"],
)
def test_metric_must_fit_the_task(task, changes, expected):
    models = [{"name": "m", "estimator": "sklearn.linear_model.Ridge"}] if task == "regression" else minimal()["models"]
    message = spec_error(with_changes(task=task, models=models, **changes))
    assert expected in message
    assert "choose one of" in message


def test_every_problem_is_reported_on_its_own_line():
    attributes = with_changes(owners=["nobody"], selection={"cv_folds": 1})
    del attributes["target"]
    lines = spec_error(attributes).splitlines()
    assert sorted(line.split(": ")[1] for line in lines) == ["owners.0", "selection.cv_folds", "target"]
    assert all(line.startswith("defs.yaml: ") for line in lines)


def test_other_spec_rules():
    assert "name: String should match pattern" in spec_error(with_changes(name="Credit-Default"))
    assert "features.split: split by time needs `column`" in spec_error(
        with_changes(features={"split": {"by": "time"}})
    )
    assert "schema.columns.age: min (90.0) is greater than max (18.0)" in spec_error(
        with_changes(schema={"columns": {"age": {"min": 90, "max": 18}}})
    )
    assert "features.derived.0: give exactly one of `expr` or `function`" in spec_error(
        with_changes(features={"derived": [{"name": "d"}]})
    )
    assert "models: candidate name 'm' is used twice" in spec_error(
        with_changes(models=[{"name": "m", "estimator": "sklearn.linear_model.LogisticRegression"}] * 2)
    )
    assert "search.C is an empty list" in spec_error(
        with_changes(models=[{**minimal()["models"][0], "search": {"C": []}}])
    )
    assert "source: Input tag 'ftp'" in spec_error(with_changes(source={"kind": "ftp", "path": "x"}))


# ---------------------------------------------------------------- the real Dagster load path


def _error_text(exc: BaseException) -> str:
    """The exception and everything it was raised from, as Dagster prints it."""
    parts, seen = [], set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts.append(str(current))
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


def _write_defs(folder: Path, attributes: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "defs.yaml"
    path.write_text(yaml.safe_dump({"type": COMPONENT_TYPE, "attributes": attributes}, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def sandbox():
    with create_defs_folder_sandbox() as box:
        yield box


@pytest.mark.parametrize(
    ("change", "field_path"),
    [
        (lambda a: a.pop("models"), "attributes.models"),
        (lambda a: a.update(models=[{"name": "x", "estimator": "sklearn.ensemble.MagicForest"}]),
         "attributes.models.0.sklearn.estimator"),
        (lambda a: a.update(features={"numerc": ["age"]}), "attributes.features.numerc"),
        (lambda a: a.update(owners=["risk team"]), "attributes.owners.0"),
    ],
    ids=["missing-models", "bad-estimator", "unknown-key", "bad-owner"],
)
def test_bad_defs_yaml_error_names_field_and_file(sandbox, change, field_path):
    attributes = minimal()
    change(attributes)
    path = _write_defs(sandbox.defs_folder_path / "loans", attributes)
    with pytest.raises(Exception) as info:
        with sandbox.build_all_defs():
            pass
    text = _error_text(info.value)
    assert f"{field_path} at {path}:" in text, text
    assert "PipelineSpec" in text


def test_metric_error_through_dagster_names_the_field_in_the_message(sandbox):
    path = _write_defs(sandbox.defs_folder_path / "loans", with_changes(selection={"metric": "rmse"}))
    with pytest.raises(Exception) as info:
        with sandbox.build_all_defs():
            pass
    text = _error_text(info.value)
    assert str(path) in text
    assert "selection.metric: 'rmse' is not a classification metric" in text


def test_loading_a_spec_reads_no_data(sandbox, monkeypatch):
    """A csv source whose file does not exist still loads and builds every definition."""

    def no_reading(*args, **kwargs):
        raise AssertionError("loading a spec must not read data")

    monkeypatch.setattr(pd, "read_csv", no_reading)
    monkeypatch.setattr(pd, "read_parquet", no_reading)
    monkeypatch.setattr("ml_pipelines.components.assets.ingestion.load_source", no_reading)
    GENERATOR_CALLS.clear()

    missing = Path(sandbox.project_root) / "data" / "never_written.csv"
    assert not missing.exists()
    _write_defs(
        sandbox.defs_folder_path / "loans", with_changes(source={"kind": "csv", "path": "data/never_written.csv"})
    )
    _write_defs(
        sandbox.defs_folder_path / "toy",
        {**minimal(), "name": "toy", "target": "y",
         "source": {"kind": "synthetic", "generator": f"{__name__}:counting_generator", "params": {"rows": 5}}},
    )
    with sandbox.build_component_tree() as tree:
        components = [tree.load_component(sandbox.defs_folder_path / n) for n in ("loans", "toy")]
        assert all(isinstance(c, MLPipeline) for c in components)
        assert components[0].spec.source.path == "data/never_written.csv"
        defs = dg.Definitions.merge(tree.build_defs(), dg.Definitions(resources=local_resources(sandbox.project_root)))
        keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
        job = defs.resolve_job_def("loans_retrain_job")
    assert keys == {f"{p}/{s}" for p in ("loans", "toy") for s in STAGES}
    assert {n.name for n in job.nodes} >= {"loans__raw_data", "loans__model_package"}
    assert GENERATOR_CALLS == []
    assert not missing.exists()


# ---------------------------------------------------------------- faults that used to pass load and fail later (issue 11)

CSV_MONITORING = {"production_data": {"kind": "csv", "path": "landing/*.csv"}}
RIDGE = [{"name": "ridge", "estimator": "sklearn.linear_model.Ridge"}]
LOGREG = "sklearn.linear_model.LogisticRegression"
LONG_NAME = "n" * 64

# case: (changes to minimal(), the field path pydantic reports, words of the message)
LOAD_TIME_ERRORS = {
    "expr-syntax": (
        {"features": {"derived": [{"name": "ratio", "expr": "income / ("}]}},
        "features.derived.0.expr",
        "expression 'income / (' is not valid",
    ),
    "empty-features": (
        {"features": {"numeric": [], "categorical": []}},
        "features",
        "`numeric` and `categorical` list no column and nothing is `derived`",
    ),
    "row-count-min-over-max": (
        {"schema": {"row_count": {"min": 1000, "max": 10}}},
        "schema.row_count",
        "min (1000) is greater than max (10)",
    ),
    "partition-end-before-start": (
        {"source": {"kind": "csv", "path": "x.csv",
                    "partitions": {"start_date": "2026-03-01", "end_date": "2026-01-31", "column": "day"}}},
        "source.csv.partitions",
        "end_date 2026-01-31 is before start_date 2026-03-01",
    ),
    "gate-min-over-one": (
        {"evaluation": {"gate": {"metric": "roc_auc", "min": 1.5}}},
        "<root>",
        "evaluation.gate.min: 1.5 is outside the range of roc_auc [0, 1], so the gate could never pass",
    ),
    "gate-min-default-metric": (
        {"evaluation": {"gate": {"min": -0.2}}},  # the gate's metric defaults to the selection metric, roc_auc
        "<root>",
        "evaluation.gate.min: -0.2 is outside the range of roc_auc [0, 1]",
    ),
    "gate-min-negative-error": (
        {"task": "regression", "models": RIDGE, "evaluation": {"gate": {"metric": "rmse", "min": -1}}},
        "<root>",
        "evaluation.gate.min: -1.0 is outside the range of rmse [0, inf]",
    ),
    "gate-min-r2-over-one": (
        {"task": "regression", "models": RIDGE, "evaluation": {"gate": {"metric": "r2", "min": 1.2}}},
        "<root>",
        "evaluation.gate.min: 1.2 is outside the range of r2 [-inf, 1]",
    ),
    "cpu-lots": (
        {"resources": {"train": {"cpu": "lots"}}},
        "resources.train.cpu",
        "'lots' is not a Kubernetes quantity",
    ),
    "memory-gigabytes": (
        {"resources": {"package": {"memory": "4GB"}}},
        "resources.package.memory",
        "'4GB' is not a Kubernetes quantity",
    ),
    "cpu-zero": ({"resources": {"train": {"cpu": "0"}}}, "resources.train.cpu", "'0' must be more than zero"),
    "grid-over-limit": (
        {"models": [{"name": "big", "estimator": LOGREG,
                     "search": {"C": list(range(20)), "tol": list(range(20))}}]},
        "models.0.sklearn.search",
        "the grid has 400 points (20 C x 20 tol); at most 256 per model",
    ),
    "candidates-over-limit": (
        {"models": [{"name": f"m{i}", "estimator": LOGREG, "search": {"C": list(range(100))}} for i in range(3)]},
        "<root>",
        "models: the search grids make 300 candidates; at most 256 over all models",
    ),
    "name-over-tag-limit": ({"name": LONG_NAME}, "name", "String should have at most 63 characters"),
    "check-cron": (
        {"monitoring": {**CSV_MONITORING, "check_cron": "every hour"}},
        "monitoring.check_cron",
        "'every hour' is not a cron expression: has 2 fields; cron needs 5",
    ),
    "retrain-cron": (
        {"monitoring": {**CSV_MONITORING, "retrain": {"cron": "0 25 * * 1"}}},
        "monitoring.retrain.cron",
        "'0 25 * * 1' is not a cron expression: hour field '25': 25 is outside 0-23",
    ),
    "null-share-over-one": (
        {"schema": {"max_null_share": 1.5}},
        "schema.max_null_share",
        "less than or equal to 1",
    ),
}


@pytest.mark.parametrize("case", list(LOAD_TIME_ERRORS))
def test_fault_that_used_to_pass_load_is_a_load_time_error_naming_its_field(case):
    changes, path, words = LOAD_TIME_ERRORS[case]
    message = spec_error(with_changes(**changes))
    assert f"defs.yaml: {path}: " in message, message
    assert words in message, message


@pytest.mark.parametrize(
    "changes",
    [
        {"name": "n" * 63},
        {"features": {"numeric": [], "derived": [{"name": "ratio", "expr": "a / (b + 1)"}]}},
        {"features": {"categorical": ["purpose"], "numeric": []}},
        {"schema": {"row_count": {"min": 10, "max": 10}, "max_null_share": 0.2,
                    "columns": {"income": {"max_null_share": 0.9}}}},
        {"source": {"kind": "csv", "path": "x.csv",
                    "partitions": {"start_date": "2026-01-01", "end_date": "2026-01-01", "column": "day"}}},
        {"evaluation": {"gate": {"metric": "log_loss", "min": 0.4}}},
        {"task": "regression", "models": RIDGE, "evaluation": {"gate": {"metric": "r2", "min": -3}}},
        {"resources": {"train": {"cpu": 2, "memory": "4Gi"}, "features": {"cpu": "500m", "memory": "1e9"},
                       "evaluate": {"cpu": 1.5, "memory": "512M"}}},
        {"models": [{"name": "grid", "estimator": LOGREG, "search": {"C": list(range(16)), "tol": list(range(16))}}]},
        {"monitoring": {**CSV_MONITORING, "check_cron": "*/15 * * * *",
                        "retrain": {"cron": "0 3 * * mon-fri"}}},
        {"monitoring": {**CSV_MONITORING, "check_cron": "@hourly", "retrain": {"cron": "0 0 L * ?"}}},
    ],
    ids=["name-63", "only-derived", "only-categorical", "row-count-equal", "one-day-partition", "gate-ceiling",
         "negative-r2", "quantities", "grid-256", "cron", "cron-macro"],
)
def test_edges_of_the_new_rules_still_load(changes):
    spec = PipelineSpec.model_validate(with_changes(**changes))
    if "resources" in changes:
        assert spec.resources["train"].cpu == "2"  # a YAML number is a Kubernetes quantity too


@pytest.mark.parametrize(
    ("change", "field_path", "words"),
    [
        (lambda a: a.update(features={"derived": [{"name": "r", "expr": "income / ("}]}),
         "attributes.features.derived.0.expr", "is not valid"),
        (lambda a: a.update(features={"numeric": [], "categorical": []}), "attributes.features",
         "nothing is `derived`"),
        (lambda a: a.update(schema={"row_count": {"min": 1000, "max": 10}}), "attributes.schema.row_count",
         "min (1000) is greater than max (10)"),
        (lambda a: a.update(source={"kind": "csv", "path": "x.csv", "partitions": {
            "start_date": "2026-03-01", "end_date": "2026-01-31", "column": "day"}}),
         "attributes.source.csv.partitions", "end_date 2026-01-31 is before start_date 2026-03-01"),
        (lambda a: a.update(resources={"train": {"cpu": "lots"}}), "attributes.resources.train.cpu",
         "'lots' is not a Kubernetes quantity"),
        (lambda a: a.update(models=[{"name": "big", "estimator": LOGREG,
                                     "search": {"C": list(range(20)), "tol": list(range(20))}}]),
         "attributes.models.0.sklearn.search", "the grid has 400 points"),
        (lambda a: a.update(name=LONG_NAME), "attributes.name", "at most 63 characters"),
        (lambda a: a.update(monitoring={**CSV_MONITORING, "check_cron": "every hour"}),
         "attributes.monitoring.check_cron", "'every hour' is not a cron expression"),
        (lambda a: a.update(monitoring={**CSV_MONITORING, "retrain": {"cron": "0 25 * * 1"}}),
         "attributes.monitoring.retrain.cron", "25 is outside 0-23"),
    ],
    ids=["expr", "empty-features", "row-count", "partitions", "cpu", "grid", "name", "check-cron", "retrain-cron"],
)
def test_new_load_time_errors_through_dagster_name_field_and_file(sandbox, change, field_path, words):
    attributes = minimal()
    change(attributes)
    path = _write_defs(sandbox.defs_folder_path / "loans", attributes)
    with pytest.raises(Exception) as info, sandbox.build_all_defs():
        pass
    text = _error_text(info.value)
    assert f"{field_path} at {path}:" in text, text
    assert words in text, text


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"evaluation": {"gate": {"metric": "roc_auc", "min": 1.5}}},
         "evaluation.gate.min: 1.5 is outside the range of roc_auc [0, 1]"),
        ({"models": [{"name": f"m{i}", "estimator": LOGREG, "search": {"C": list(range(100))}} for i in range(3)]},
         "models: the search grids make 300 candidates"),
    ],
    ids=["gate-min", "candidates"],
)
def test_whole_spec_errors_through_dagster_name_the_field_in_the_message(sandbox, changes, words):
    path = _write_defs(sandbox.defs_folder_path / "loans", with_changes(**changes))
    with pytest.raises(Exception) as info, sandbox.build_all_defs():
        pass
    text = _error_text(info.value)
    assert str(path) in text
    assert words in text, text


def test_spec_json_schema_carries_the_name_limit():
    """`dg check yaml` validates against the JSON schema, so the name limit shows there too."""
    assert PipelineSpec.model_json_schema()["properties"]["name"]["maxLength"] == 63


def test_a_retrain_window_needs_labels_and_an_unpartitioned_source():
    attributes = small_credit_attributes()
    without_labels = {**attributes, "monitoring": {**attributes["monitoring"], "labels": None}}
    with pytest.raises(ValidationError, match="retrain.window: only labelled production batches"):
        PipelineSpec.model_validate(without_labels)
    partitioned = {**attributes, "source": {**attributes["source"],
                                            "partitions": {"start_date": "2026-01-01", "column": "applied_on"}}}
    with pytest.raises(ValidationError, match="not supported with a partitioned source"):
        PipelineSpec.model_validate(partitioned)
    no_id = {**attributes, "monitoring": {**attributes["monitoring"], "production_data": {
        "kind": "csv", "path": "landing/*.csv"}}}
    with pytest.raises(ValidationError, match="production_data.id_column: labels join production rows by id"):
        PipelineSpec.model_validate(no_id)
    feedback_on_files = {**attributes, "monitoring": {**attributes["monitoring"], "labels": {"kind": "feedback"}}}
    with pytest.raises(ValidationError, match="kind feedback labels the served predictions"):
        PipelineSpec.model_validate(feedback_on_files)


def test_empty_attributes_fail_loading_naming_every_required_field(sandbox):
    """`attributes: {}` (what a bare scaffold used to write) said only "needs `attributes`"."""
    folder = sandbox.defs_folder_path / "loans"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "defs.yaml").write_text(f"type: {COMPONENT_TYPE}\nattributes: {{}}\n")
    with pytest.raises(Exception) as info:
        with sandbox.build_all_defs():
            pass
    text = _error_text(info.value)
    assert f"{folder / 'defs.yaml'}: `attributes` is empty or missing" in text, text
    assert "needs name, task, target, source, models" in text, text


def test_every_spec_field_has_a_description():
    """`dg utils inspect-component` and editors show these; a field without one is a field nobody can look up."""
    schema = PipelineSpec.model_json_schema(by_alias=True)
    models = {"PipelineSpec": schema, **schema["$defs"]}
    undescribed = [f"{model}.{field}" for model, body in models.items()
                   for field, prop in body.get("properties", {}).items() if not prop.get("description")]
    assert undescribed == []
    assert sum(len(body.get("properties", {})) for body in models.values()) > 100  # the walk saw every model


@pytest.mark.parametrize(
    ("freshness", "words"),
    [
        ({"model": "30"}, "'30' is not a duration: write a whole number and a unit"),
        ({"model": "1y"}, "'1y' is not a duration"),
        ({"production_data": "0h"}, "'0h' is not a duration: it must be longer than zero"),
        ({"production_data": "-1d"}, "'-1d' is not a duration"),
    ],
    ids=["no-unit", "unknown-unit", "zero", "negative"],
)
def test_freshness_durations_are_checked_at_load_naming_the_field(freshness, words):
    message = spec_error(with_changes(monitoring={**CSV_MONITORING, "freshness": freshness}))
    (field,) = freshness
    assert f"defs.yaml: monitoring.freshness.{field}: " in message, message
    assert words in message, message


def test_freshness_of_production_data_needs_production_data():
    message = spec_error(with_changes(monitoring={"freshness": {"production_data": "24h"}}))
    assert "freshness.production_data: there is no production data to watch" in message, message


def test_freshness_becomes_dagster_freshness_policies():
    """monitoring.freshness: {production_data: 24h, model: 30d} puts a time-window freshness policy on
    production_data and model_package, and on no other asset."""
    from datetime import timedelta

    from ml_pipelines.components import build_pipeline_defs

    spec = PipelineSpec.model_validate(
        with_changes(monitoring={**CSV_MONITORING, "freshness": {"production_data": "24h", "model": "30d"}})
    )
    graph = dg.Definitions.merge(
        build_pipeline_defs(spec), dg.Definitions(resources=local_resources("/nonexistent"))
    ).resolve_asset_graph()
    windows = {
        key.path[-1]: graph.get(key).freshness_policy.fail_window.to_timedelta()
        for key in graph.get_all_asset_keys()
        if graph.get(key).freshness_policy is not None
    }
    assert windows == {"production_data": timedelta(hours=24), "model_package": timedelta(days=30)}
    assert PipelineSpec.model_validate(minimal()).monitoring.freshness.model is None  # off unless set
