"""Derived-feature expressions (expressions.py): anything beyond column names, constants,
arithmetic, comparisons, boolean logic and a few math functions is a load-time spec
error naming `features.derived.<i>.expr`; what is allowed computes what DataFrame.eval
computed before."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from ml_pipelines.core.features import DerivedColumns, FeatureError, expr_inputs
from ml_pipelines.expressions import ExpressionError, check_expression, evaluate_expression
from ml_pipelines.spec import PipelineSpec, format_validation_error


def spec_with(*exprs: str) -> dict:
    return {
        "name": "loans",
        "task": "classification",
        "target": "defaulted",
        "source": {"kind": "csv", "path": "data/loans.csv"},
        "features": {"derived": [{"name": f"d{i}", "expr": e} for i, e in enumerate(exprs)]},
        "models": [{"name": "logreg", "estimator": "sklearn.linear_model.LogisticRegression"}],
    }


@pytest.fixture
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    return pd.DataFrame(
        {
            "a": rng.normal(5, 2, 50),
            "b": rng.integers(0, 4, 50).astype("int64"),
            "purpose": rng.choice(["car", "home", "other"], 50),
        }
    )


@pytest.mark.parametrize(
    ("expr", "uses"),
    [
        ("a.to_csv('x.csv')", "a call to a.to_csv()"),
        ("a.values", "attribute access (.values)"),
        ("__import__('os').system('id')", "a call to"),
        ("a[0]", "indexing"),
        ("(lambda: 1)()", "a call to"),
        ("print(a)", "a call to print()"),
        ("log(a, base=2)", "a call to log()"),
        ("[x for x in a]", "ListComp"),
        ("a if b else 1", "IfExp"),
        ("a @ b", "MatMult"),
        ("(b := 1)", "NamedExpr"),
        ("f'{a}'", "JoinedStr"),
        ("__class__", "the name __class__"),
        ("None", "the constant None"),
    ],
)
def test_anything_but_the_allowed_subset_is_refused_at_load(expr, uses, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a.to_csv would write here
    with pytest.raises(ValidationError) as info:
        PipelineSpec.model_validate(spec_with("a + b", expr))
    message = format_validation_error(info.value, "defs.yaml")
    assert message.startswith(f"defs.yaml: features.derived.1.expr: expression {expr!r} uses {uses}"), message
    assert "allowed: column names" in message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("expr", ["@a + 1", "a +", "income /", "a = 1", "`my col` + 1"])
def test_syntax_errors_are_refused_at_load(expr):
    with pytest.raises(ValidationError) as info:
        PipelineSpec.model_validate(spec_with(expr))
    message = format_validation_error(info.value, "defs.yaml")
    assert message.startswith(f"defs.yaml: features.derived.0.expr: expression {expr!r} is not valid"), message


ALLOWED = [
    "a / (b + 1)",
    "a * 2 - b ** 2 + a // 3 + a % 2",
    "-a + +b",
    "(a > 5) & (b <= 2)",
    "a > 5 and b <= 2 or not b == 1",
    "~(a > 5) | (b != 0)",
    "1 < a < 6",
    "purpose == 'car'",
    "purpose in ['car', 'home']",
    "purpose not in ('other',)",
    "log1p(abs(a)) + sqrt(b) - exp(a / 10)",
    "floor(a) + ceil(a) + log10(b + 1) + tanh(a) + sin(a) * cos(b) + expm1(b / 10) + log(a + 10) + tan(b)",
    "a / b",  # division by zero: pandas gives inf, DerivedColumns turns it into a missing value
    "True",
    "3.5",
]


@pytest.mark.parametrize("expr", ALLOWED)
def test_allowed_expressions_compute_what_dataframe_eval_computes(expr, frame):
    PipelineSpec.model_validate(spec_with(expr))
    expected = frame.eval(expr, engine="python")
    actual = evaluate_expression(expr, frame)
    if isinstance(expected, pd.Series):
        pd.testing.assert_series_equal(actual, expected)
    else:
        assert actual == expected


def test_inputs_are_columns_not_functions():
    assert check_expression("log1p(income) / (dependents + 1) - income") == ["income", "dependents"]
    assert expr_inputs("sqrt(abs(a))") == ["a"]
    with pytest.raises(FeatureError, match=r"uses a call to a\.to_csv\(\)"):
        expr_inputs("a.to_csv('x')")


def test_names_resolve_to_columns_only(frame):
    """DataFrame.eval would look a name that is not a column up among Python variables."""
    with pytest.raises(ExpressionError, match="reads column 'np', which the data does not have"):
        evaluate_expression("np", frame)


def test_a_stored_model_with_an_unsafe_expression_is_refused_where_it_runs(frame, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    derived = DerivedColumns((("leak", "a.to_csv('stolen.csv')", None),))
    with pytest.raises(FeatureError, match="derived feature 'leak': expression .* uses a call to a.to_csv"):
        derived.transform(frame)
    assert not (tmp_path / "stolen.csv").exists()
