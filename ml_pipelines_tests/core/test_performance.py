"""Paired bootstrap (core.performance): a candidate truly better, truly equal and truly
worse than the reference on the same rows, with the decision each time; seeded and
deterministic. Metric estimates with intervals, and the performance_holds verdict."""

from __future__ import annotations

import numpy as np
import pytest

from ml_pipelines.core.performance import Scored, estimate, paired_bootstrap, performance_holds

ROWS = 4000


def _labels(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2, ROWS)


def _scored(y: np.ndarray, signal: float, noise_seed: int) -> Scored:
    """Probabilities that separate the classes by `signal` (0 = coin flip)."""
    rng = np.random.default_rng(noise_seed)
    p1 = 1 / (1 + np.exp(-(signal * (2 * y - 1) + rng.normal(0, 1, len(y)))))
    proba = np.column_stack([1 - p1, p1])
    return Scored(y, (p1 > 0.5).astype(int), proba, (0, 1))


def test_a_truly_better_candidate_is_not_worse_at_any_margin():
    y = _labels()
    result = paired_bootstrap("roc_auc", _scored(y, 1.5, 1), _scored(y, 0.5, 2), samples=300, seed=7)
    assert result.loss < 0 and result.loss_high < 0  # better on every resample's interval
    assert result.not_worse_by_more_than(0.0)
    assert result.rows == ROWS and result.samples == 300


def test_a_truly_worse_candidate_is_refused():
    y = _labels()
    result = paired_bootstrap("roc_auc", _scored(y, 0.5, 1), _scored(y, 1.5, 2), samples=300, seed=7)
    assert result.loss > 0.1 and result.loss_low > 0
    assert not result.not_worse_by_more_than(0.01)


def test_a_truly_equal_candidate_passes_only_within_its_margin():
    y = _labels()
    same = _scored(y, 1.0, 1)
    identical = paired_bootstrap("roc_auc", same, same, samples=200, seed=7)
    assert identical.loss == identical.loss_bound == 0.0
    assert identical.not_worse_by_more_than(0.0)
    # equal skill, independent noise: small differences either way
    twin = paired_bootstrap("roc_auc", _scored(y, 1.0, 1), _scored(y, 1.0, 2), samples=300, seed=7)
    assert abs(twin.loss) < 0.02 and twin.loss_low < 0 < twin.loss_high
    assert twin.not_worse_by_more_than(0.03)
    assert not twin.not_worse_by_more_than(0.0)


def test_lower_is_better_metrics_count_a_higher_value_as_worse():
    y = np.random.default_rng(0).normal(0, 1, ROWS)
    good = Scored(y, y + np.random.default_rng(1).normal(0, 0.1, ROWS), None, None)
    bad = Scored(y, y + np.random.default_rng(2).normal(0, 0.5, ROWS), None, None)
    result = paired_bootstrap("rmse", bad, good, samples=200, seed=3)
    assert result.loss > 0 and not result.not_worse_by_more_than(0.1)
    assert paired_bootstrap("rmse", good, bad, samples=200, seed=3).not_worse_by_more_than(0.0)


def test_the_same_seed_gives_the_same_decision_and_interval():
    y = _labels()
    a = paired_bootstrap("roc_auc", _scored(y, 1.0, 1), _scored(y, 0.9, 2), samples=200, seed=11)
    b = paired_bootstrap("roc_auc", _scored(y, 1.0, 1), _scored(y, 0.9, 2), samples=200, seed=11)
    assert a == b


def test_both_models_must_be_scored_on_the_same_rows():
    y = _labels()
    with pytest.raises(ValueError, match="same labelled rows"):
        paired_bootstrap("roc_auc", _scored(y, 1, 1), _scored(y[::-1].copy(), 1, 2))


def test_an_estimate_has_an_interval_around_its_value_and_none_where_undefined():
    y = _labels()
    value = estimate("roc_auc", _scored(y, 1.0, 1), samples=100)
    assert value.low < value.value < value.high
    one_class = Scored(np.zeros(50, dtype=int), np.zeros(50, dtype=int), np.tile([0.9, 0.1], (50, 1)), (0, 1))
    assert estimate("roc_auc", one_class).value is None


def test_performance_holds_fails_only_on_enough_evidence_of_a_real_drop():
    dropped = performance_holds("roc_auc", 0.62, 0.74, rows=500, max_drop=0.05, min_rows=200)
    assert not dropped.passed and "0.1200 worse" in dropped.reason and dropped.drop == pytest.approx(0.12)
    assert performance_holds("roc_auc", 0.72, 0.74, rows=500, max_drop=0.05, min_rows=200).passed
    too_few = performance_holds("roc_auc", 0.50, 0.74, rows=50, max_drop=0.05, min_rows=200)
    assert too_few.passed and "not enough evidence" in too_few.reason
    assert not performance_holds("rmse", 12.0, 10.0, rows=500, max_drop=1.0, min_rows=10).passed


@pytest.mark.parametrize("metric", ["roc_auc", "log_loss", "accuracy"])
def test_the_paired_bootstrap_resamples_are_the_indexing_bootstraps(metric):
    """Counts laid out for the candidate's roc_auc give the losses that recomputing both models'
    metric on each resample's rows gives (the same rng.integers(0, n, n) draws)."""
    from ml_pipelines.core.metrics import compute_metric, regression_of

    y = _labels()[:600]
    base = _scored(y, 1.0, 1)
    candidate = Scored(y, base.y_pred, np.round(base.proba, 1), (0, 1))  # tied scores, as a tree model gives
    reference = _scored(y, 0.8, 2)
    rng = np.random.default_rng(5)
    losses = []
    for _ in range(80):
        idx = rng.integers(0, len(y), len(y))
        scores = [compute_metric(metric, y[idx], s.y_pred[idx], s.proba[idx], s.classes)
                  for s in (candidate, reference)]
        losses.append(regression_of(metric, *scores))
    got = paired_bootstrap(metric, candidate, reference, samples=80, seed=5, confidence=0.9)
    assert got.loss_low == pytest.approx(np.quantile(losses, 0.05), abs=1e-9)
    assert got.loss_bound == pytest.approx(np.quantile(losses, 0.9), abs=1e-9)
