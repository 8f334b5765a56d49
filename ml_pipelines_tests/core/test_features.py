"""core.features: feature resolution, derived columns (expressions and functions),
time and stratified random splits, and named errors for missing columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml_pipelines.core.features import (
    DerivedColumns,
    FeatureError,
    build_feature_set,
    build_preprocessor,
    check_required_columns,
    expr_inputs,
    required_columns,
    resolve_feature_columns,
    split_frame,
)
from ml_pipelines.spec import SplitSpec
from ml_pipelines_tests.specs import make_spec

ROWS = 300


def debt_per_line(frame: pd.DataFrame) -> pd.Series:
    """A derived-feature function named from specs by dotted path."""
    return frame["debt_ratio"] / (frame["credit_lines"] + 1)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    return pd.DataFrame(
        {
            "applied_on": pd.Timestamp("2026-01-01") + pd.to_timedelta(rng.permutation(ROWS), unit="D"),
            "income": rng.normal(50_000, 8_000, ROWS).round(2),
            "dependents": rng.integers(0, 4, ROWS),
            "debt_ratio": rng.uniform(0, 1, ROWS),
            "credit_lines": rng.integers(0, 8, ROWS),
            "purpose": pd.array(rng.choice(["car", "home", "other"], ROWS), dtype="str"),
            # 20% positives: a stratified split keeps that share in both halves
            "defaulted": (np.arange(ROWS) % 5 == 0).astype("int64"),
        }
    )


def spec(**overrides):
    attributes = {
        "name": "loans",
        "task": "classification",
        "target": "defaulted",
        "source": {"kind": "csv", "path": "data/loans.csv"},
        "features": {
            "numeric": ["income", "debt_ratio"],
            "categorical": ["purpose"],
            "derived": [
                {"name": "income_per_dependent", "expr": "income / (dependents + 1)"},
                {
                    "name": "debt_per_line",
                    "function": f"{__name__}:debt_per_line",
                    "inputs": ["debt_ratio", "credit_lines"],
                },
            ],
        },
        "models": [{"name": "logreg", "estimator": "sklearn.linear_model.LogisticRegression"}],
    }
    attributes.update(overrides)
    return make_spec(**attributes)


# ---------------------------------------------------------------- columns


def test_expr_inputs_in_order_of_appearance():
    assert expr_inputs("income / (dependents + 1) - income") == ["income", "dependents"]
    with pytest.raises(FeatureError, match="expression 'income /' is not valid"):
        expr_inputs("income /")


def test_resolved_columns_and_lineage(frame):
    columns = resolve_feature_columns(spec(), frame)
    assert columns.numeric == ("income", "debt_ratio", "income_per_dependent", "debt_per_line")
    assert columns.categorical == ("purpose",)
    assert columns.inputs == ("income", "debt_ratio", "purpose", "dependents", "credit_lines")
    lineage = columns.lineage()
    assert lineage["income_per_dependent"] == ("income", "dependents")
    assert lineage["debt_per_line"] == ("debt_ratio", "credit_lines")
    assert lineage["purpose"] == ("purpose",)


def test_features_left_out_are_taken_by_dtype(frame):
    columns = resolve_feature_columns(spec(features={"split": {"by": "time", "column": "applied_on"}}), frame)
    assert columns.numeric == ("income", "dependents", "debt_ratio", "credit_lines")
    assert columns.categorical == ("purpose",)
    assert "defaulted" not in columns.inputs and "applied_on" not in columns.inputs


def test_numeric_feature_that_holds_text_is_named(frame):
    with pytest.raises(FeatureError, match="features.numeric: column 'purpose' holds .* values, not numbers"):
        resolve_feature_columns(spec(features={"numeric": ["income", "purpose"]}), frame)


def test_required_columns_come_from_the_spec_alone():
    assert required_columns(spec(evaluation={"slices": ["region"]})) == [
        "defaulted", "income", "debt_ratio", "purpose", "dependents", "credit_lines", "region",
    ]


@pytest.mark.parametrize(
    "column", ["defaulted", "debt_ratio", "dependents"], ids=["target", "feature", "derived-input"]
)
def test_missing_column_is_named_with_its_source(frame, column):
    where = "csv data/loans.csv (1 file)"
    with pytest.raises(FeatureError) as info:
        check_required_columns(frame.drop(columns=[column]), spec(), where)
    message = str(info.value)
    assert message.startswith(f"{where}: column {column!r} named in the spec is missing from the data")
    assert "the data has: applied_on, income" in message


def test_every_missing_column_is_listed(frame):
    with pytest.raises(FeatureError, match=r"column 'defaulted' .* \(also missing: income\)"):
        check_required_columns(frame.drop(columns=["defaulted", "income"]), spec(), "sql source on sqlite://")


def test_build_feature_set_names_a_missing_column(frame):
    with pytest.raises(FeatureError, match="^features: column 'purpose' named in the spec is missing"):
        build_feature_set(spec(), frame.drop(columns=["purpose"]))


def test_null_target_is_an_error(frame):
    with_nulls = frame.assign(defaulted=frame["defaulted"].astype("float64"))
    with_nulls.loc[[3, 7], "defaulted"] = np.nan
    with pytest.raises(FeatureError, match="target 'defaulted' has 2 null values"):
        build_feature_set(spec(), with_nulls)


def test_a_single_class_target_is_an_error_naming_it(frame):
    with pytest.raises(FeatureError, match=r"target 'defaulted' has 1 class\(es\) \[0\]; classification needs two"):
        build_feature_set(spec(), frame.assign(defaulted=0))
    regression = spec(task="regression", models=[{"name": "ridge", "estimator": "sklearn.linear_model.Ridge"}])
    assert build_feature_set(regression, frame.assign(defaulted=0)).task == "regression"


# ---------------------------------------------------------------- derived columns


def test_derived_expr_and_function_values(frame):
    derived = DerivedColumns(
        (
            ("income_per_dependent", "income / (dependents + 1)", None),
            ("debt_per_line", None, f"{__name__}:debt_per_line"),
        )
    )
    out = derived.fit_transform(frame)
    np.testing.assert_allclose(out["income_per_dependent"], frame["income"] / (frame["dependents"] + 1))
    np.testing.assert_allclose(out["debt_per_line"], frame["debt_ratio"] / (frame["credit_lines"] + 1))
    assert "income_per_dependent" not in frame.columns  # the input is not modified


def test_division_by_zero_becomes_missing_not_infinite():
    out = DerivedColumns((("ratio", "a / b", None),)).transform(pd.DataFrame({"a": [1.0, 2.0], "b": [0.0, 4.0]}))
    assert np.isnan(out["ratio"].iloc[0]) and out["ratio"].iloc[1] == 0.5


def test_derived_error_names_the_feature():
    with pytest.raises(FeatureError, match="derived feature 'ratio'"):
        DerivedColumns((("ratio", "a / missing_column", None),)).transform(pd.DataFrame({"a": [1.0]}))


def test_preprocessor_applies_derived_columns_and_ignores_unseen_categories(frame):
    columns = resolve_feature_columns(spec(), frame)
    preprocessor = build_preprocessor(columns).fit(frame)
    names = list(preprocessor.named_steps["encode"].get_feature_names_out())
    assert "income_per_dependent" in names and "debt_per_line" in names
    assert {"purpose_car", "purpose_home", "purpose_other"} <= set(names)
    unseen = frame.iloc[:3].assign(purpose="boat")
    encoded = preprocessor.transform(unseen)
    one_hot = [names.index(n) for n in ("purpose_car", "purpose_home", "purpose_other")]
    assert encoded.shape == (3, len(names))
    assert np.all(encoded[:, one_hot] == 0)


# ---------------------------------------------------------------- splits


def test_time_split_puts_the_latest_rows_in_test(frame):
    split = SplitSpec(by="time", column="applied_on", test_size=0.25)
    train, test, stratified = split_frame(frame, "defaulted", split, "classification")
    assert (len(train), len(test)) == (225, 75)
    assert train["applied_on"].max() < test["applied_on"].min()
    assert stratified is False


def test_stratified_random_split_keeps_class_shares_and_is_seeded(frame):
    split = SplitSpec(test_size=0.2, seed=3)
    train, test, stratified = split_frame(frame, "defaulted", split, "classification")
    assert stratified is True
    assert (len(train), len(test)) == (240, 60)
    assert train["defaulted"].mean() == pytest.approx(0.2)
    assert test["defaulted"].mean() == pytest.approx(0.2)
    again, _, _ = split_frame(frame, "defaulted", split, "classification")
    pd.testing.assert_frame_equal(train, again)
    other, _, _ = split_frame(frame, "defaulted", SplitSpec(test_size=0.2, seed=4), "classification")
    assert not train.equals(other)


def test_regression_split_is_not_stratified(frame):
    _, _, stratified = split_frame(frame, "income", SplitSpec(), "regression")
    assert stratified is False


def test_single_row_class_falls_back_to_plain_random_split(frame):
    rare = frame.assign(defaulted=0)
    rare.loc[0, "defaulted"] = 1
    train, test, stratified = split_frame(rare, "defaulted", SplitSpec(), "classification")
    assert stratified is False and len(train) + len(test) == ROWS


def test_too_few_rows_to_split(frame):
    with pytest.raises(FeatureError, match="split: 3 rows are too few"):
        split_frame(frame.iloc[:3], "defaulted", SplitSpec(), "classification")


def test_feature_set_keeps_inputs_slices_and_target(frame):
    feature_set = build_feature_set(spec(evaluation={"slices": ["purpose"]}), frame)
    assert set(feature_set.train.columns) == {
        "income", "debt_ratio", "purpose", "dependents", "credit_lines", "defaulted",
    }
    x, y = feature_set.xy("test")
    assert "defaulted" not in x.columns and len(y) == len(feature_set.test) == 60
    inputs = feature_set.model_inputs()
    assert inputs.inputs == ["income", "debt_ratio", "purpose", "dependents", "credit_lines"]
    assert inputs.types["purpose"] == "category" and inputs.types["income"] == "float"
    assert inputs.train_rows == 240 and inputs.test_rows == 60
