"""Metrics (core.metrics), holdout evaluation and the promotion gate
(core.evaluation), and the evaluation plots (core.plots)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from ml_pipelines.core.champion import Champion
from ml_pipelines.core.evaluation import (
    Evaluation,
    Predictions,
    bootstrap_intervals,
    evaluate,
    permutation_importance,
    slice_metrics,
)
from ml_pipelines.core.features import build_feature_set
from ml_pipelines.core.gate import decide_gate
from ml_pipelines.core.metrics import MetricError, compute_metric, compute_metrics
from ml_pipelines.core.models import Candidate, build_model
from ml_pipelines.core.plots import confusion_counts, curves, drawn_points, evaluation_plots, scattered
from ml_pipelines_tests.specs import make_spec

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MAX_PNG_BYTES = 60_000


def signal_frame(rows: int = 1500, seed: int = 0) -> pd.DataFrame:
    """`signal` decides the label, `noise` is independent of it, `region` is a slice column."""
    rng = np.random.default_rng(seed)
    signal, noise = rng.normal(size=rows), rng.normal(size=rows)
    region = rng.choice(["north", "south", "east"], size=rows, p=[0.45, 0.45, 0.10])
    label = (signal + 0.5 * rng.normal(size=rows) > 0).astype(np.int64)
    amount = 10.0 * signal + rng.normal(size=rows)
    return pd.DataFrame(
        {"signal": signal, "noise": noise, "region": pd.array(region, dtype="str"), "label": label, "amount": amount}
    )


def _features(task: str = "classification", target: str = "label", frame: pd.DataFrame | None = None):
    spec = make_spec(
        name="evaluation_test",
        task=task,
        target=target,
        source={"kind": "synthetic", "generator": "ml_pipelines_tests.core.test_metrics_evaluation:signal_frame"},
        features={"numeric": ["signal", "noise"], "categorical": ["region"], "split": {"test_size": 0.3, "seed": 1}},
        models=[{"name": "m", "estimator": "sklearn.dummy.DummyClassifier"}],
        evaluation={"slices": ["region"]},
    )
    return build_feature_set(spec, signal_frame() if frame is None else frame)


def _fitted(features, estimator: str, **params):
    from ml_pipelines.spec import SklearnModel

    candidate = Candidate(SklearnModel(name="m", estimator=estimator, params=params))
    model = build_model(candidate, features.columns, features.task)
    return model.fit(*features.xy("train"))


# ------------------------------------------------------------------ metrics match sklearn


def _probabilities(rng, rows: int, classes: int) -> np.ndarray:
    raw = rng.random((rows, classes)) + 0.05
    return raw / raw.sum(axis=1, keepdims=True)


def test_binary_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 2, 300)
    proba = _probabilities(rng, 300, 2)
    proba[:, 1] = np.clip(proba[:, 1] + 0.3 * (y_true - 0.5), 0.01, 0.99)
    proba[:, 0] = 1 - proba[:, 1]
    y_pred = (proba[:, 1] > 0.5).astype(int)
    got = compute_metrics(["roc_auc", "accuracy", "f1", "f1_macro", "log_loss"], y_true, y_pred, proba, (0, 1))
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y_true, proba[:, 1]))
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert got["f1"] == pytest.approx(skm.f1_score(y_true, y_pred))
    assert got["f1_macro"] == pytest.approx(skm.f1_score(y_true, y_pred, average="macro"))
    assert got["log_loss"] == pytest.approx(skm.log_loss(y_true, proba))
    assert got["roc_auc"] > 0.6  # the probabilities carry signal: not a trivial 0.5


def test_binary_string_labels_use_the_second_class_as_positive():
    rng = np.random.default_rng(1)
    y_true = rng.choice(["no", "yes"], 200)
    proba = _probabilities(rng, 200, 2)
    y_pred = np.where(proba[:, 1] > 0.5, "yes", "no")
    assert compute_metric("roc_auc", y_true, y_pred, proba, ("no", "yes")) == pytest.approx(
        skm.roc_auc_score(y_true == "yes", proba[:, 1])
    )
    assert compute_metric("f1", y_true, y_pred, proba, ("no", "yes")) == pytest.approx(
        skm.f1_score(y_true, y_pred, pos_label="yes")
    )


def test_multiclass_metrics_match_sklearn_with_string_labels():
    rng = np.random.default_rng(2)
    classes = ("barbera", "barolo", "grignolino")  # as model.classes_ holds them: sorted
    y_true = rng.choice(classes, 400)
    proba = _probabilities(rng, 400, 3)
    for i, c in enumerate(classes):
        proba[y_true == c, i] += 0.4
    proba /= proba.sum(axis=1, keepdims=True)
    y_pred = np.array(classes)[proba.argmax(axis=1)]
    got = compute_metrics(["roc_auc", "accuracy", "f1", "f1_macro", "log_loss"], y_true, y_pred, proba, classes)
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y_true, proba, multi_class="ovr", labels=list(classes)))
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert got["f1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="weighted"))
    assert got["f1_macro"] == pytest.approx(skm.f1_score(y_true, y_pred, average="macro"))
    assert got["log_loss"] == pytest.approx(skm.log_loss(y_true, proba, labels=list(classes)))
    # and the per-class one-vs-rest mean, worked out by hand
    by_hand = np.mean([skm.roc_auc_score(y_true == c, proba[:, i]) for i, c in enumerate(classes)])
    assert got["roc_auc"] == pytest.approx(by_hand)


def test_regression_metrics_match_sklearn():
    rng = np.random.default_rng(3)
    y_true = rng.normal(50, 10, 250)
    y_pred = y_true + rng.normal(0, 3, 250)
    got = compute_metrics(["rmse", "mae", "r2"], y_true, y_pred)
    assert got["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y_true, y_pred)))
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y_true, y_pred))
    assert got["r2"] == pytest.approx(skm.r2_score(y_true, y_pred))


def test_metric_errors_name_the_problem():
    with pytest.raises(MetricError, match="unknown metric 'auc'"):
        compute_metric("auc", np.array([0, 1]), np.array([0, 1]))
    with pytest.raises(MetricError, match="roc_auc needs predicted probabilities"):
        compute_metric("roc_auc", np.array([0, 1]), np.array([0, 1]))
    with pytest.raises(MetricError, match="only class"):
        compute_metric("roc_auc", np.array([1, 1]), np.array([1, 1]), np.array([[0.2, 0.8], [0.3, 0.7]]), (0, 1))


# ------------------------------------------------------------------ holdout evaluation


@pytest.fixture(scope="module")
def classification():
    features = _features()
    model = _fitted(features, "sklearn.linear_model.LogisticRegression")
    return features, model


def test_bootstrap_intervals_contain_the_point_estimate(classification):
    features, model = classification
    names = ["roc_auc", "accuracy", "f1", "log_loss"]
    result = evaluate(model, features, names, slices=[], importance_metric="roc_auc", bootstrap_samples=100)
    assert set(result.intervals) == set(names)
    for name in names:
        interval, point = result.intervals[name], result.metrics[name]
        assert interval.low < point < interval.high, (name, interval, point)
        assert interval.high - interval.low < 0.2
    assert result.test_rows == len(features.test)
    # no bootstrap asked: no intervals
    assert bootstrap_intervals(names, result.predictions, samples=0) == {}


def test_bootstrap_skips_resamples_that_miss_a_class():
    y = np.array([0] * 19 + [1])
    p = Predictions(y, y.copy(), np.column_stack([1 - y * 0.9, y * 0.9]), (0, 1))
    intervals = bootstrap_intervals(["roc_auc", "accuracy"], p, samples=50)
    assert intervals["accuracy"].low == intervals["accuracy"].high == 1.0
    # about a third of the resamples hold no positive row; the others still give an interval
    assert intervals["roc_auc"].low == pytest.approx(1.0)


def test_slice_metrics_match_the_metric_on_each_slice(classification):
    features, model = classification
    result = evaluate(model, features, ["accuracy", "roc_auc"], slices=["region"], importance_metric="roc_auc",
                      bootstrap_samples=0)
    x_test, y_test = features.xy("test")
    counts = x_test["region"].value_counts()
    assert {s.value for s in result.slices} == {"north", "south", "east"}
    for piece in result.slices:
        mask = (x_test["region"] == piece.value).to_numpy()
        assert piece.column == "region"
        assert piece.rows == counts[piece.value]
        p = result.predictions
        assert piece.metrics["accuracy"] == pytest.approx(skm.accuracy_score(p.y_true[mask], p.y_pred[mask]))
        assert piece.metrics["roc_auc"] == pytest.approx(skm.roc_auc_score(p.y_true[mask], p.proba[mask, 1]))


def test_slices_below_min_rows_are_left_out_and_undefined_metrics_are_none():
    y = np.array([0, 1] * 10 + [1] * 12)
    p = Predictions(y, y.copy(), np.column_stack([1 - y * 0.8, y * 0.8]), (0, 1))
    frame = pd.DataFrame({"group": ["mixed"] * 20 + ["ones"] * 10 + ["tiny"] * 2})
    rows = {s.value: s for s in slice_metrics(["accuracy", "roc_auc"], p, frame, ["group"], min_rows=10)}
    assert set(rows) == {"mixed", "ones"}
    assert rows["mixed"].metrics == {"accuracy": 1.0, "roc_auc": 1.0}
    assert rows["ones"].metrics["roc_auc"] is None
    assert rows["ones"].metrics["accuracy"] == 1.0


def sklearn_slice_metrics(names, p: Predictions, frame: pd.DataFrame, columns, min_rows=10):
    """The implementation the weighted slices replace: sklearn's metric on each slice's rows."""
    rows = {}
    for column in columns:
        keys = frame[column].astype("str").fillna("<null>").to_numpy()
        for value in sorted(set(keys)):
            mask = keys == value
            if mask.sum() < min_rows:
                continue
            proba = p.proba[mask] if p.proba is not None else None
            metrics = {}
            for name in names:
                try:
                    metrics[name] = compute_metric(name, p.y_true[mask], p.y_pred[mask], proba, p.classes)
                except (MetricError, ValueError):
                    metrics[name] = None
            rows[column, value] = (int(mask.sum()), metrics)
    return rows


def _slice_cases():
    rng = np.random.default_rng(4)
    n = 900
    region = rng.choice(["north", "south", "east"], n).astype(object)
    region[:40] = None  # a "<null>" slice
    level = rng.integers(0, 4, n).astype(float)
    frame = pd.DataFrame({"region": region, "level": level})
    y = rng.integers(0, 2, n)
    y[frame["level"].to_numpy() == 3] = 1  # one class only: roc_auc undefined there
    score = np.round(np.clip(0.3 + 0.4 * y + rng.normal(0, 0.25, n), 0, 1), 1)  # tied scores
    y_pred = (score > 0.5).astype(int)
    y_pred[frame["level"].to_numpy() == 0] = 0  # nothing predicted positive: f1 is 0
    binary = Predictions(y, y_pred, np.column_stack([1 - score, score]), (0, 1))
    labels = np.array(["a", "b", "c"])
    y3 = labels[rng.integers(0, 3, n)]
    y3[frame["level"].to_numpy() == 2] = "a"  # a class missing from a slice
    logits = rng.normal(size=(n, 3)) + 1.2 * (y3[:, None] == labels[None, :])
    proba3 = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    multiclass = Predictions(y3, labels[proba3.argmax(axis=1)], proba3, ("a", "b", "c"))
    amount = rng.normal(size=n) * 10
    regression = Predictions(amount, amount + rng.normal(size=n), None, None)
    classification_names = ["roc_auc", "accuracy", "f1", "f1_macro", "log_loss"]
    return frame, [(binary, classification_names), (multiclass, classification_names),
                   (regression, ["mae", "rmse", "r2"]), (Predictions(y, y_pred, None, (0, 1)), ["roc_auc", "f1"])]


@pytest.mark.parametrize("case", range(4), ids=["binary", "multiclass", "regression", "no probabilities"])
def test_weighted_slice_metrics_are_sklearns_on_each_slice(case):
    frame, cases = _slice_cases()
    p, names = cases[case]
    expected = sklearn_slice_metrics(names, p, frame, ["region", "level"])
    got = {(s.column, s.value): (s.rows, s.metrics) for s in slice_metrics(names, p, frame, ["region", "level"])}
    assert list(got) == list(expected)
    for key, (rows, metrics) in expected.items():
        assert got[key][0] == rows
        for name, value in metrics.items():
            if value is None:
                assert got[key][1][name] is None, (key, name)
            else:
                assert got[key][1][name] == pytest.approx(value, abs=1e-9), (key, name)


def test_permutation_importance_ranks_signal_above_noise(classification):
    features, model = classification
    importance = permutation_importance(model, features, "roc_auc")
    ranked = [name for name, _, _ in importance]
    assert set(ranked) == {"signal", "noise", "region"}
    assert ranked[0] == "signal"
    drops = {name: drop for name, drop, _ in importance}
    assert drops["signal"] > 0.2
    assert abs(drops["noise"]) < 0.02
    assert drops["signal"] > drops["noise"] + 0.2


def test_permutation_importance_for_lower_is_better_metrics_is_positive_when_it_hurts():
    features = _features("regression", "amount")
    model = _fitted(features, "sklearn.linear_model.Ridge")
    importance = dict((name, drop) for name, drop, _ in permutation_importance(model, features, "rmse"))
    assert importance["signal"] > 5.0  # rmse grows by several units when the signal is shuffled
    assert abs(importance["noise"]) < 0.1


def test_evaluation_scores_the_champion_on_the_same_rows(classification):
    features, model = classification
    weak = _fitted(features, "sklearn.dummy.DummyClassifier")
    result = evaluate(model, features, ["roc_auc", "accuracy"], slices=[], importance_metric="roc_auc",
                      bootstrap_samples=0, champion=Champion("v1", weak, {"roc_auc": 0.99, "accuracy": 0.99}))
    assert result.champion_version == "v1"
    assert result.champion_metrics["roc_auc"] == pytest.approx(0.5)
    assert result.champion_note == f"champion v1 scored on the same {len(features.test)} holdout rows"


def test_a_champion_that_cannot_score_these_rows_falls_back_to_its_record(classification):
    features, model = classification
    # trained when the data had another column: it cannot read the new rows
    old_frame = signal_frame().rename(columns={"noise": "old_noise"})
    old_spec = make_spec(
        name="evaluation_test", task="classification", target="label",
        source={"kind": "synthetic", "generator": "ml_pipelines_tests.core.test_metrics_evaluation:signal_frame"},
        features={"numeric": ["signal", "old_noise"], "categorical": ["region"]},
        models=[{"name": "m", "estimator": "sklearn.dummy.DummyClassifier"}],
    )
    old = _fitted(build_feature_set(old_spec, old_frame), "sklearn.linear_model.LogisticRegression")
    recorded = {"roc_auc": 0.81, "accuracy": 0.77}
    result = evaluate(model, features, ["roc_auc", "accuracy"], slices=[], importance_metric="roc_auc",
                      bootstrap_samples=0, champion=Champion("v0", old, recorded))
    assert result.champion_metrics == recorded
    assert "cannot score these rows" in result.champion_note
    assert "old_noise" in result.champion_note


# ------------------------------------------------------------------ the gate


def test_gate_without_champion_applies_only_the_floor():
    passing = decide_gate("roc_auc", 0.75, minimum=0.7, max_regression=0.01)
    assert passing.passed
    assert passing.reasons == (
        "roc_auc 0.7500 meets the floor (at least 0.7000)",
        "no champion yet: only the floor applies",
    )
    failing = decide_gate("roc_auc", 0.65, minimum=0.7, max_regression=0.01)
    assert not failing.passed
    assert "roc_auc 0.6500 fails the floor (at least 0.7000)" in failing.explain()
    # no floor and no champion: nothing to fail
    assert decide_gate("roc_auc", 0.51, minimum=None, max_regression=0.0).passed


def test_gate_blocks_a_regression_larger_than_allowed():
    decision = decide_gate("roc_auc", 0.78, minimum=0.7, max_regression=0.01, champion_version="v1", champion=0.80)
    assert not decision.passed
    assert decision.reasons[0].startswith("roc_auc 0.7800 meets the floor")
    assert decision.reasons[1] == "roc_auc 0.7800 vs champion v1 0.8000: worse by 0.0200 (allowed regression 0.0100)"


def test_gate_allows_a_regression_within_max_regression_and_passes_a_better_one():
    within = decide_gate("roc_auc", 0.795, minimum=None, max_regression=0.01, champion_version="v1", champion=0.80)
    assert within.passed
    exactly = decide_gate("accuracy", 0.79, minimum=None, max_regression=0.01, champion_version="v1", champion=0.80)
    assert exactly.passed
    better = decide_gate("roc_auc", 0.83, minimum=0.7, max_regression=0.0, champion_version="v1", champion=0.80)
    assert better.passed
    assert "better by 0.0300" in better.explain()
    equal = decide_gate("roc_auc", 0.80, minimum=None, max_regression=0.0, champion_version="v1", champion=0.80)
    assert equal.passed and "equal" in equal.explain()


def test_gate_beating_the_champion_does_not_excuse_the_floor():
    decision = decide_gate("roc_auc", 0.65, minimum=0.7, max_regression=0.0, champion_version="v1", champion=0.6)
    assert not decision.passed


def test_gate_handles_lower_is_better_metrics():
    worse = decide_gate("rmse", 12.0, minimum=15.0, max_regression=0.5, champion_version="v3", champion=10.0)
    assert not worse.passed
    assert worse.reasons[0] == "rmse 12.0000 meets the floor (at most 15.0000)"
    assert "worse by 2.0000" in worse.reasons[1]
    better = decide_gate("rmse", 9.0, minimum=15.0, max_regression=0.0, champion_version="v3", champion=10.0)
    assert better.passed and "better by 1.0000" in better.explain()
    over_floor = decide_gate("rmse", 16.0, minimum=15.0, max_regression=0.0)
    assert not over_floor.passed
    assert "rmse 16.0000 fails the floor (at most 15.0000)" in over_floor.explain()


def test_the_gate_metric_is_always_evaluated():
    base = dict(name="g", task="classification", target="label",
                source={"kind": "synthetic", "generator": "ml_pipelines_tests.core.test_metrics_evaluation:signal_frame"},
                models=[{"name": "m", "estimator": "sklearn.dummy.DummyClassifier"}])
    unlisted = make_spec(**base, evaluation={"metrics": ["accuracy"], "gate": {"metric": "roc_auc"}})
    assert unlisted.evaluation_metrics == ["accuracy", "roc_auc"]
    by_selection = make_spec(**base, selection={"metric": "log_loss"}, evaluation={"metrics": ["f1"]})
    assert by_selection.gate_metric == "log_loss"
    assert by_selection.evaluation_metrics == ["f1", "log_loss"]
    listed = make_spec(**base, evaluation={"metrics": ["roc_auc", "accuracy"]})
    assert listed.evaluation_metrics == ["roc_auc", "accuracy"]
    assert make_spec(**base).evaluation_metrics == ["roc_auc", "accuracy", "f1", "f1_macro", "log_loss"]


# ------------------------------------------------------------------ plots


def _assert_small_pngs(plots: dict[str, bytes], expected: set[str]) -> None:
    assert set(plots) == expected
    for name, png in plots.items():
        assert png.startswith(PNG_MAGIC), name
        assert png.rstrip(b"\x00").endswith(b"IEND\xaeB`\x82"), name
        assert 1_000 < len(png) < MAX_PNG_BYTES, (name, len(png))


def test_binary_classification_plots_are_small_pngs(classification):
    features, model = classification
    result = evaluate(model, features, ["roc_auc"], slices=[], importance_metric="roc_auc", bootstrap_samples=0)
    _assert_small_pngs(
        evaluation_plots(result, "classification", "roc_auc"),
        {"feature_importance", "roc_curve", "pr_curve", "confusion_matrix"},
    )


def test_multiclass_plots_are_small_pngs():
    frame = signal_frame()
    frame["label"] = pd.array(np.where(frame["signal"] > 0.6, "high", np.where(frame["signal"] < -0.6, "low", "mid")),
                              dtype="str")
    features = _features(frame=frame)
    model = _fitted(features, "sklearn.linear_model.LogisticRegression")
    result = evaluate(model, features, ["roc_auc", "f1_macro"], slices=[], importance_metric="f1_macro",
                      bootstrap_samples=0)
    assert result.metrics["f1_macro"] > 0.8
    _assert_small_pngs(
        evaluation_plots(result, "classification", "f1_macro"),
        {"feature_importance", "roc_curve", "pr_curve", "confusion_matrix"},
    )


def test_regression_plots_are_small_pngs():
    features = _features("regression", "amount")
    model = _fitted(features, "sklearn.linear_model.Ridge")
    result = evaluate(model, features, ["rmse", "r2"], slices=[], importance_metric="rmse", bootstrap_samples=0)
    assert result.metrics["r2"] > 0.95
    _assert_small_pngs(
        evaluation_plots(result, "regression", "rmse"), {"feature_importance", "residuals", "predicted_vs_actual"}
    )


def test_both_curves_from_one_sort_are_sklearns():
    """curves() takes the precision-recall points from roc_curve's counts: the same points,
    average precision and AUC as sklearn's own three calls, ties included."""
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 2, 5_000).astype(bool)
    score = np.round(np.clip(rng.normal(0.4 + 0.2 * truth, 0.2), 0, 1), 2)  # many ties
    drawn = curves(truth, score)
    precision, recall, _ = skm.precision_recall_curve(truth, score)
    np.testing.assert_allclose(drawn.precision, precision, rtol=0, atol=1e-12)
    np.testing.assert_allclose(drawn.recall, recall, rtol=0, atol=1e-12)
    assert drawn.average_precision == pytest.approx(skm.average_precision_score(truth, score), abs=1e-12)
    assert drawn.auc == pytest.approx(skm.roc_auc_score(truth, score), abs=1e-12)
    for one_class in (np.zeros(50, dtype=bool), np.ones(50, dtype=bool)):  # a class absent from the holdout
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sklearn warns that the curve is undefined
            drawn, expected = curves(one_class, score[:50]), skm.precision_recall_curve(one_class, score[:50])
        np.testing.assert_allclose(drawn.precision, expected[0], rtol=0, atol=1e-12)
        np.testing.assert_allclose(drawn.recall, expected[1], rtol=0, atol=1e-12)


def test_a_long_curve_is_drawn_with_bounded_points_that_follow_it():
    rng = np.random.default_rng(4)
    truth = rng.integers(0, 2, 200_000).astype(bool)
    drawn = curves(truth, rng.normal(truth * 0.5, 1.0))
    x, y = drawn_points(drawn.fpr, drawn.tpr, limit=500)
    assert len(drawn.fpr) > 100_000 and 400 <= len(x) <= 501
    assert (x[0], y[0], x[-1], y[-1]) == (drawn.fpr[0], drawn.tpr[0], drawn.fpr[-1], drawn.tpr[-1])
    # every true point lies within one drawing step of the thinned polyline's points
    along = np.interp(drawn.fpr, x, y)
    assert np.abs(along - drawn.tpr).max() < 2 / 500
    short = np.linspace(0, 1, 50)
    assert drawn_points(short, short, limit=500)[0] is short


def test_scatter_plots_draw_a_bounded_sample_and_say_so():
    rows = 12_000
    y_true = np.arange(rows, dtype=float)
    big = Evaluation(metrics={}, intervals={}, slices=[], importance=[], test_rows=rows,
                     predictions=Predictions(y_true, y_true + 1, None, None))
    actual, predicted, note = scattered(big, limit=1_000)
    assert len(actual) == 1_000 and len(np.unique(actual)) == 1_000
    np.testing.assert_array_equal(predicted, actual + 1)  # the same rows of both
    assert note == " (1,000 of 12,000 rows)"
    assert scattered(big, limit=rows)[2] == ""


def test_confusion_counts_are_sklearns():
    rng = np.random.default_rng(5)
    y_true = np.array(["a", "b", "c"])[rng.integers(0, 3, 3_000)]
    y_pred = np.array(["a", "b", "c", "z"])[rng.integers(0, 4, 3_000)]  # z: not a label, left out
    for labels in (["a", "b", "c"], ["c", "a", "b"], ["a", "b"]):
        np.testing.assert_array_equal(confusion_counts(y_true, y_pred, labels),
                                      skm.confusion_matrix(y_true, y_pred, labels=labels))
