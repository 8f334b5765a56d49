"""Model selection (core.selection): cross-validation over every candidate and
grid point, latency and size limits, and the candidates table."""

from __future__ import annotations

import re
import time

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from ml_pipelines.core import selection as selection_module
from ml_pipelines.core.features import FeatureSet, build_feature_set
from ml_pipelines.core.models import Candidate, expand_candidates
from ml_pipelines.core.selection import SelectionError, _folds, candidate_results_of, cv_sample, select_model
from ml_pipelines.datasets.credit import generate
from ml_pipelines_tests.specs import make_spec

SLOW_SECONDS_PER_ROW = 1e-3


class SlowClassifier(LogisticRegression):
    """A real classifier whose probabilities take 1 ms per row: breaks any tight latency limit."""

    def predict_proba(self, X):
        time.sleep(SLOW_SECONDS_PER_ROW * len(X))
        return super().predict_proba(X)


class SlowForest(RandomForestClassifier):
    """Large (60 trees) and slow (1 ms per row): breaks both limits at once."""

    def predict_proba(self, X):
        time.sleep(SLOW_SECONDS_PER_ROW * len(X))
        return super().predict_proba(X)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def credit_frame() -> pd.DataFrame:
    return generate(rows=800, seed=3)


CLASSIFICATION_FEATURES = {"numeric": ["income", "age", "debt_ratio", "employment_years"], "categorical": ["purpose"]}
# employment_years grows with age in the generator: a signal a linear model finds
REGRESSION_FEATURES = {"numeric": ["income", "age", "debt_ratio"], "categorical": ["purpose"]}


def _spec(models: list[dict], task: str = "classification", target: str = "defaulted", **extra):
    features = CLASSIFICATION_FEATURES if task == "classification" else REGRESSION_FEATURES
    return make_spec(
        name="selection_test",
        task=task,
        target=target,
        source={"kind": "synthetic", "generator": "ml_pipelines.datasets.credit:generate"},
        features={**features, **extra.pop("features", {})},
        models=models,
        **extra,
    )


def _select(frame: pd.DataFrame, models: list[dict], *, metric: str = "roc_auc", cv_folds: int = 2,
            task: str = "classification", target: str = "defaulted", **kwargs):
    spec = _spec(models, task=task, target=target)
    features = build_feature_set(spec, frame)
    return features, select_model(
        features, expand_candidates(list(spec.models)), metric=metric, cv_folds=cv_folds, **kwargs
    )


DUMMY = {"name": "dummy", "estimator": "sklearn.dummy.DummyClassifier"}
LOGREG = {"name": "logreg", "estimator": "sklearn.linear_model.LogisticRegression"}
FOREST = {"name": "forest", "estimator": "sklearn.ensemble.RandomForestClassifier", "params": {"n_estimators": 60}}
SLOW = {"name": "slow", "estimator": "ml_pipelines_tests.core.test_selection:SlowClassifier"}
SLOW_FOREST = {"name": "slow_forest", "estimator": "ml_pipelines_tests.core.test_selection:SlowForest",
               "params": {"n_estimators": 60}}
# scaled features are negative: MultinomialNB refuses them when it fits ("Negative values in data")
NAIVE_BAYES = {"name": "nb", "estimator": "sklearn.naive_bayes.MultinomialNB"}


# ------------------------------------------------------------------ picking the winner


def test_selection_picks_the_clearly_better_candidate(credit_frame):
    features, result = _select(credit_frame, [DUMMY, LOGREG], cv_folds=3)
    by_name = {r.model_name: r for r in result.results}
    assert by_name["dummy"].mean == pytest.approx(0.5)
    assert by_name["logreg"].mean > 0.65
    assert result.best is by_name["logreg"]
    assert len(by_name["logreg"].fold_scores) == 3
    # the winner is refit on the whole training split
    assert isinstance(result.model[-1], LogisticRegression)
    x, _ = features.xy("train")
    assert result.model[-1].n_features_in_ == result.model[:-1].transform(x).shape[1]
    proba = result.model.predict_proba(features.xy("test")[0])
    assert proba.shape == (len(features.test), 2)


def test_lower_is_better_metrics_pick_the_smallest_error(credit_frame):
    models = [
        {"name": "mean", "estimator": "sklearn.dummy.DummyRegressor"},
        {"name": "ridge", "estimator": "sklearn.linear_model.Ridge"},
    ]
    _, result = _select(credit_frame, models, metric="rmse", task="regression", target="employment_years")
    by_name = {r.model_name: r for r in result.results}
    assert by_name["ridge"].mean < 0.9 * by_name["mean"].mean
    assert result.best is by_name["ridge"]


# ------------------------------------------------------------------ folds


def test_classification_folds_are_stratified(credit_frame):
    spec = _spec([LOGREG])
    features = build_feature_set(spec, credit_frame)
    _, y = features.xy("train")
    rate = y.mean()
    folds = list(_folds(features, y, 5))
    assert len(folds) == 5
    for _, val_idx in folds:
        positives = int(y.iloc[val_idx].sum())
        expected = rate * len(val_idx)
        assert abs(positives - expected) <= 1, (positives, expected)
    # every training row is validated exactly once
    assert sorted(np.concatenate([v for _, v in folds]).tolist()) == list(range(len(y)))


def test_rare_class_still_gets_scored_in_every_fold(credit_frame):
    # exactly 3 positive rows in training: unstratified 3-fold CV would leave some fold without one,
    # where roc_auc is undefined
    frame = credit_frame.copy()
    positives = frame.index[frame["defaulted"] == 1]
    frame.loc[positives[4:], "defaulted"] = 0
    spec = _spec([LOGREG], features={"split": {"test_size": 0.2, "seed": 0}})
    features = build_feature_set(spec, frame)
    assert int(features.train["defaulted"].sum()) == 3
    result = select_model(features, expand_candidates(list(spec.models)), metric="roc_auc", cv_folds=3)
    assert len(result.best.fold_scores) == 3


def test_too_many_folds_for_the_rarest_class_is_a_clear_error(credit_frame):
    frame = credit_frame.copy()
    positives = frame.index[frame["defaulted"] == 1]
    frame.loc[positives[4:], "defaulted"] = 0
    spec = _spec([LOGREG], features={"split": {"test_size": 0.2, "seed": 0}})
    features = build_feature_set(spec, frame)
    with pytest.raises(SelectionError, match=r"cv_folds=5 is more than the 3 rows of the rarest class.*lower cv_folds"):
        select_model(features, expand_candidates(list(spec.models)), metric="roc_auc", cv_folds=5)


def test_regression_uses_plain_kfold(credit_frame):
    spec = _spec([{"name": "ridge", "estimator": "sklearn.linear_model.Ridge"}], task="regression",
                 target="employment_years")
    features = build_feature_set(spec, credit_frame)
    folds = list(_folds(features, features.xy("train")[1], 4))
    sizes = sorted(len(v) for _, v in folds)
    assert len(folds) == 4 and sizes[-1] - sizes[0] <= 1
    assert sorted(np.concatenate([v for _, v in folds]).tolist()) == list(range(len(features.train)))


# ------------------------------------------------------------------ the grid


def test_every_grid_point_is_a_candidate(credit_frame):
    models = [
        {**LOGREG, "search": {"C": [0.01, 1.0], "fit_intercept": [True, False]}},
        {**DUMMY, "search": {"strategy": ["prior", "stratified"]}},
    ]
    _, result = _select(credit_frame, models)
    labels = [r.label for r in result.results]
    assert labels == [
        "logreg(C=0.01, fit_intercept=True)",
        "logreg(C=0.01, fit_intercept=False)",
        "logreg(C=1.0, fit_intercept=True)",
        "logreg(C=1.0, fit_intercept=False)",
        "dummy(strategy=prior)",
        "dummy(strategy=stratified)",
    ]
    assert [r.params for r in result.results][:2] == [
        {"C": 0.01, "fit_intercept": True},
        {"C": 0.01, "fit_intercept": False},
    ]
    assert all(len(r.fold_scores) == 2 for r in result.results)
    # the refit model carries the winning grid point's parameters
    assert result.best.model_name == "logreg"
    assert result.model[-1].get_params()["C"] == result.best.params["C"]


# ------------------------------------------------------------------ limits


def test_a_candidate_over_max_latency_is_dropped_with_the_reason(credit_frame):
    _, result = _select(credit_frame, [SLOW, LOGREG], max_latency_ms=0.5)
    by_name = {r.model_name: r for r in result.results}
    slow, fast = by_name["slow"], by_name["logreg"]
    assert slow.latency_ms_per_row >= SLOW_SECONDS_PER_ROW * 1000 * 0.9
    assert slow.dropped is not None
    assert re.fullmatch(r"latency \d+\.\d{3} ms/row > max_latency_ms 0\.5", slow.dropped)
    assert fast.dropped is None
    assert result.best is fast
    # the slow one scores as well as the fast one (same model): the limit alone dropped it
    assert slow.mean == pytest.approx(fast.mean, abs=1e-6)


def test_a_candidate_over_max_size_is_dropped_with_the_reason(credit_frame):
    _, result = _select(credit_frame, [FOREST, LOGREG], max_size_mb=0.5)
    by_name = {r.model_name: r for r in result.results}
    assert by_name["forest"].size_mb > 0.5
    assert by_name["logreg"].size_mb < 0.5
    assert re.fullmatch(r"size \d+\.\d{2} MB > max_size_mb 0\.5", by_name["forest"].dropped)
    assert by_name["logreg"].dropped is None
    assert result.best is by_name["logreg"]


def test_a_candidate_over_both_limits_is_dropped_with_both_reasons(credit_frame):
    _, result = _select(credit_frame, [SLOW_FOREST, LOGREG], max_latency_ms=0.5, max_size_mb=0.5)
    by_name = {r.model_name: r for r in result.results}
    both = by_name["slow_forest"]
    assert len(both.drop_reasons) == 2
    assert re.fullmatch(r"latency \d+\.\d{3} ms/row > max_latency_ms 0\.5", both.drop_reasons[0])
    assert re.fullmatch(r"size \d+\.\d{2} MB > max_size_mb 0\.5", both.drop_reasons[1])
    assert both.dropped == "; ".join(both.drop_reasons)
    assert result.best is by_name["logreg"] and by_name["logreg"].drop_reasons == ()
    status = {line.split("|")[1].strip(): line.split("|")[-2].strip() for line in result.table_markdown().splitlines()[2:]}
    assert "latency" in status["slow_forest"] and "size" in status["slow_forest"]


def test_a_candidate_that_fails_to_fit_is_dropped_with_its_error_and_the_rest_compete(credit_frame):
    lines: list[str] = []
    _, result = _select(credit_frame, [NAIVE_BAYES, LOGREG], log=lines.append)
    by_name = {r.model_name: r for r in result.results}
    failed = by_name["nb"]
    assert failed.failed and failed.error.startswith("models.nb: candidate nb failed on this data: ")
    assert "Negative values" in failed.error
    assert failed.drop_reasons == (f"failed to fit: {failed.error}",)
    assert failed.fold_scores == [] and np.isnan(failed.mean) and np.isnan(failed.latency_ms_per_row)
    assert result.best is by_name["logreg"]
    assert any(line.startswith("cv nb: dropped, failed to fit: models.nb:") for line in lines)
    row = next(line for line in result.table_markdown().splitlines() if line.startswith("| nb |"))
    assert row.startswith("| nb | - | - | - | - | - | dropped: failed to fit: models.nb:"), row


def test_a_selection_that_selects_nothing_carries_every_candidates_result(credit_frame):
    from ml_pipelines.core.errors import ModelError

    spec = _spec([NAIVE_BAYES, SLOW])
    features = build_feature_set(spec, credit_frame)
    with pytest.raises(SelectionError) as caught:
        select_model(features, expand_candidates(list(spec.models)), metric="roc_auc", cv_folds=2, max_latency_ms=0.5)
    assert re.search(r"nb: failed to fit: models.nb: .*Negative values.*; slow: latency \d", str(caught.value))
    assert [r.label for r in candidate_results_of(caught.value)] == ["nb", "slow"]
    # every candidate failed to fit: the first failure itself, still a ModelError naming it
    spec = _spec([NAIVE_BAYES])
    with pytest.raises(ModelError, match=r"^models.nb: candidate nb failed on this data: ") as caught:
        select_model(build_feature_set(spec, credit_frame), expand_candidates(list(spec.models)), metric="roc_auc",
                     cv_folds=2)
    assert [r.label for r in candidate_results_of(caught.value)] == ["nb"]
    assert candidate_results_of(ValueError("other")) == ()


def test_every_candidate_dropped_raises_naming_each_reason(credit_frame):
    spec = _spec([DUMMY, LOGREG, FOREST])
    features = build_feature_set(spec, credit_frame)
    with pytest.raises(SelectionError) as caught:
        select_model(features, expand_candidates(list(spec.models)), metric="roc_auc", cv_folds=2, max_size_mb=0.001)
    message = str(caught.value)
    assert message.startswith("every candidate was dropped: ")
    for name in ("dummy", "logreg", "forest"):
        assert re.search(rf"{name}: size \d+\.\d\d MB > max_size_mb 0\.001", message), message

    with pytest.raises(SelectionError) as caught:
        select_model(features, expand_candidates(list(spec.models)), metric="roc_auc", cv_folds=2,
                     max_latency_ms=1e-7)
    for name in ("dummy", "logreg", "forest"):
        assert re.search(rf"{name}: latency \d+\.\d+ ms/row > max_latency_ms 1e-07", str(caught.value))


# ------------------------------------------------------------------ the table and the log


def test_markdown_table_lists_every_candidate(credit_frame):
    _, result = _select(credit_frame, [DUMMY, LOGREG, FOREST], max_size_mb=0.5)
    lines = result.table_markdown().splitlines()
    assert lines[0] == "| candidate | roc_auc mean | std | latency ms/row | size MB | fit s | status |"
    assert lines[1] == "|---|---|---|---|---|---|---|"
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in lines[2:]}
    assert set(rows) == {"dummy", "logreg", "forest"}
    for r in result.results:
        mean, std, latency, size, fit, status = rows[r.label]
        assert mean == f"{r.mean:.4f}"
        assert std == f"{r.std:.4f}"
        assert latency == f"{r.latency_ms_per_row:.4f}"
        assert size == f"{r.size_mb:.3f}"
        assert fit == f"{r.fit_seconds:.2f}"
        assert r.fit_seconds > 0 and r.latency_ms_per_row > 0 and r.size_mb > 0
    assert rows["logreg"][-1] == "**selected**"
    assert rows["forest"][-1].startswith("dropped: size ")
    assert rows["dummy"][-1] == ""


def test_selection_logs_folds_and_torch_epochs(credit_frame):
    torch_model = {"name": "mlp", "framework": "torch", "hidden_layers": [8], "epochs": 2,
                   "early_stopping_patience": None}
    lines: list[str] = []
    _, result = _select(credit_frame, [torch_model], log=lines.append)
    assert [line for line in lines if line.startswith("cv mlp fold")] == [
        f"cv mlp fold {i}/2: roc_auc={s:.4f}" for i, s in zip((1, 2), result.best.fold_scores)
    ]
    # 2 folds + the refit, 2 epochs each
    assert sum(line.startswith("torch epoch ") for line in lines) == 6
    assert result.best.framework == "torch"
    assert isinstance(result.model, Pipeline) and result.model[-1].log_fn is None


# ------------------------------------------------------------------ deterministic failures are not retried (issue 11)


def _features_with_train(credit_frame: pd.DataFrame, **train_columns) -> FeatureSet:
    """A feature set whose training split is changed after it was built (the checks before
    training would refuse such data; selection must still name the problem)."""
    from dataclasses import replace

    features = build_feature_set(_spec([LOGREG]), credit_frame)
    return replace(features, train=features.train.assign(**train_columns))


def test_a_single_class_training_split_is_a_model_error_naming_the_candidate(credit_frame):
    from ml_pipelines.core.errors import InputError, ModelError

    features = _features_with_train(credit_frame, defaulted=0)
    with pytest.raises(ModelError) as info:
        select_model(features, expand_candidates(list(_spec([LOGREG]).models)), metric="roc_auc", cv_folds=2)
    message = str(info.value)
    assert message.startswith("models.logreg: candidate logreg failed on this data: ")
    assert "the target 'defaulted' has 1 class(es) here: [0]" in message
    assert isinstance(info.value, InputError)  # fail-fast: never retried


def test_infinite_values_in_training_are_a_model_error_naming_the_column(credit_frame):
    from ml_pipelines.core.errors import ModelError

    features = _features_with_train(credit_frame, income=np.inf)
    with pytest.raises(ModelError, match=r"models.logreg: candidate logreg failed on this data: .*infinity.*"
                                         r"\(columns with infinite values: income\)"):
        select_model(features, expand_candidates(list(_spec([LOGREG]).models)), metric="roc_auc", cv_folds=2)


class FlakyClassifier(LogisticRegression):
    """Fails as a transient error would (not a ValueError)."""

    def fit(self, X, y):
        raise MemoryError("the node ran out of memory")


def test_other_errors_are_left_to_the_retry_policy(credit_frame):
    spec = _spec([{"name": "flaky", "estimator": "ml_pipelines_tests.core.test_selection:FlakyClassifier"}])
    features = build_feature_set(spec, credit_frame)
    with pytest.raises(MemoryError):
        select_model(features, expand_candidates(list(spec.models)), metric="roc_auc", cv_folds=2)


def test_a_sample_bounds_cross_validation_and_the_winner_learns_from_every_row(credit_frame):
    """selection.sample_rows: the folds hold only the sample (stratified: the class share kept),
    the refit sees every training row, and the result says which rows were used."""
    spec = _spec([LOGREG])
    features = build_feature_set(spec, credit_frame)
    _, y = features.xy("train")
    sample = cv_sample(y, features.task, 200, seed=0)
    assert len(sample) == 200 and len(set(sample)) == 200
    assert abs(y.iloc[sample].mean() - y.mean()) < 0.02
    assert (cv_sample(y, features.task, None) == np.arange(len(y))).all()
    assert (cv_sample(y, features.task, 10 * len(y)) == np.arange(len(y))).all()

    fitted_rows = []

    class Recording(LogisticRegression):
        def fit(self, X, y, sample_weight=None):
            fitted_rows.append(len(X))
            return super().fit(X, y, sample_weight=sample_weight)

    recording = Candidate(expand_candidates(spec.models)[0].model)
    original = selection_module.build_model
    selection_module.build_model = lambda candidate, columns, task, seed=0: Pipeline(
        [*original(candidate, columns, task, seed).steps[:-1], ("model", Recording(max_iter=500))])
    try:
        result = select_model(features, [recording], metric="roc_auc", cv_folds=2, sample_rows=200)
    finally:
        selection_module.build_model = original
    assert fitted_rows[:2] == [100, 100]  # two folds of the 200-row sample
    assert fitted_rows[-1] == len(y)  # the refit: every training row
    assert (result.cv_rows, result.train_rows) == (200, len(y))
    assert "a sample of 200 of the" in result.describe_sample()
