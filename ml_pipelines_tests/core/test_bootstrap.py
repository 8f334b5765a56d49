"""core.bootstrap: resamples as per-row counts give the intervals the indexing bootstrap
gives (the same resamples, every metric, binary, multiclass and regression, ties and
undefined resamples included), at a fraction of the cost."""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest

from ml_pipelines.core import bootstrap
from ml_pipelines.core.bootstrap import BLOCK_ROWS, drawn_ahead, resample_counts
from ml_pipelines.core.evaluation import Predictions, bootstrap_intervals
from ml_pipelines.core.metrics import MetricError, compute_metric

TOLERANCE = 1e-9  # sums in another order: the same values up to floating point


def indexing_bootstrap(names, p: Predictions, samples: int, seed: int = 0, level: float = 0.95):
    """The implementation this replaces: every metric recomputed on each resample's rows, and
    resamples where it is undefined left out (the old code let sklearn's NaN for a multiclass
    roc_auc with a class not drawn into the interval, which made it NaN)."""
    rng = np.random.default_rng(seed)
    n = len(p.y_true)
    values: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(samples):
        idx = rng.integers(0, n, n)
        proba = p.proba[idx] if p.proba is not None else None
        for name in names:
            try:
                value = compute_metric(name, p.y_true[idx], p.y_pred[idx], proba, p.classes)
            except (MetricError, ValueError):
                continue
            if not np.isnan(value):
                values[name].append(value)
    alpha = (1 - level) / 2
    return {name: (float(np.quantile(v, alpha)), float(np.quantile(v, 1 - alpha))) for name, v in values.items() if v}


def _classification(rows: int, classes: tuple, seed: int, rounded: bool) -> Predictions:
    rng = np.random.default_rng(seed)
    y = rng.choice(np.array(classes), size=rows)
    logits = rng.normal(size=(rows, len(classes))) + 1.5 * (y[:, None] == np.array(classes)[None, :])
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    if rounded:  # many tied scores, as a tree model gives
        proba = np.round(proba, 1)
        proba = proba / proba.sum(axis=1, keepdims=True)
    y_pred = np.array(classes)[proba.argmax(axis=1)]
    return Predictions(y, y_pred, proba, classes)


def _assert_same(names, p: Predictions, samples: int) -> None:
    with warnings.catch_warnings():  # sklearn warns on every resample with an undefined metric
        warnings.simplefilter("ignore")
        expected = indexing_bootstrap(names, p, samples)
    got = bootstrap_intervals(names, p, samples)
    assert set(got) == set(expected)
    for name, (low, high) in expected.items():
        assert got[name].low == pytest.approx(low, abs=TOLERANCE), name
        assert got[name].high == pytest.approx(high, abs=TOLERANCE), name


@pytest.mark.parametrize("rounded", [False, True], ids=["distinct scores", "tied scores"])
def test_binary_classification_intervals_match_the_indexing_bootstrap(rounded):
    p = _classification(400, (0, 1), seed=1, rounded=rounded)
    _assert_same(["roc_auc", "accuracy", "f1", "f1_macro", "log_loss"], p, samples=60)


def test_a_few_tied_scores_give_the_indexing_bootstraps_intervals_and_the_same_wins_to_the_bit():
    """Under half the positives tied with a negative: the ties' halves are gathered for those
    alone (_wins_with_few_ties), and every win equals the one gathering for all positives."""
    p = _classification(400, (0, 1), seed=6, rounded=False)
    positives, negatives = np.flatnonzero(p.y_true == 1), np.flatnonzero(p.y_true == 0)
    p.proba[positives[:20]] = p.proba[negatives[:20]]  # 20 of about 200 positives tied
    _assert_same(["roc_auc"], p, samples=60)
    score = p.proba[:, 1]
    negative_scores = np.sort(score[negatives])
    positive_scores = np.sort(score[positives])
    below = np.searchsorted(negative_scores, positive_scores, side="left")
    up_to = np.searchsorted(negative_scores, positive_scores, side="right")
    tied = np.flatnonzero(up_to != below)
    assert 0 < len(tied) < len(positives) / 2
    counts = np.random.default_rng(1).poisson(1.0, (5, len(score))).astype(float)
    drawn_positives = counts[:, len(negatives):]
    running = np.zeros((5, len(negatives) + 1))
    np.cumsum(counts[:, : len(negatives)], axis=1, out=running[:, 1:])
    np.testing.assert_array_equal(bootstrap._wins_with_few_ties(below, up_to, tied)(drawn_positives, running),
                                  bootstrap._wins(below, up_to)(drawn_positives, running))


def test_blocks_drawn_ahead_are_the_same_blocks_drawn_on_another_thread_into_two_arrays(monkeypatch):
    """The next block is drawn while the caller works on this one, in one generator's order, into
    two arrays taken by turns (none allocated in the drawing thread); a caller that stops early
    leaves no draw running."""
    monkeypatch.setattr(bootstrap, "BLOCK_BYTES", 2 * 8 * 300)  # two resamples of 300 rows a block
    expected = list(resample_counts(300, 7, seed=2, block_rows=64))
    threads = []
    fill = bootstrap._Draws.fill
    monkeypatch.setattr(bootstrap._Draws, "fill",
                        lambda self, counts: threads.append(threading.current_thread()) or fill(self, counts))
    blocks = [], []
    for block in drawn_ahead(300, 7, seed=2, block_rows=64):
        blocks[0].append(block)
        blocks[1].append(block.copy())
    assert [len(block) for block in blocks[1]] == [len(block) for block in expected] == [2, 2, 2, 1]
    np.testing.assert_array_equal(np.concatenate(blocks[1]), np.concatenate(expected))
    assert len(threads) == 4 and len(set(threads)) == 1 and threading.current_thread() not in threads
    assert np.shares_memory(blocks[0][0], blocks[0][2]) and np.shares_memory(blocks[0][1], blocks[0][3])
    assert not np.shares_memory(blocks[0][0], blocks[0][1])
    threads.clear()
    ahead = drawn_ahead(300, 7, seed=2, block_rows=64)
    np.testing.assert_array_equal(next(ahead), expected[0])
    ahead.close()
    assert len(threads) == 2  # the first block, and the one drawn ahead: nothing after


def test_multiclass_intervals_with_string_labels_match_the_indexing_bootstrap():
    p = _classification(300, ("class_0", "class_1", "class_2"), seed=2, rounded=True)
    _assert_same(["roc_auc", "accuracy", "f1", "f1_macro", "log_loss"], p, samples=60)


def test_regression_intervals_match_the_indexing_bootstrap():
    rng = np.random.default_rng(3)
    y = rng.normal(size=500) * 10
    p = Predictions(y, y + rng.normal(size=500) * 3, None, None)
    _assert_same(["mae", "rmse", "r2"], p, samples=60)


def test_resamples_where_a_metric_is_undefined_are_left_out_alike():
    # a rare class: in many resamples of 30 rows roc_auc is undefined, and a rare third class
    # in the multiclass case makes its one-vs-rest AUC undefined too
    y = np.array([0] * 28 + [1] * 2)
    proba = np.column_stack([1 - y * 0.6 - 0.1, y * 0.6 + 0.1])
    _assert_same(["roc_auc", "f1", "accuracy"], Predictions(y, (proba[:, 1] > 0.5).astype(int), proba, (0, 1)), 80)
    p = _classification(40, ("a", "b", "c"), seed=4, rounded=False)
    rare = p.y_true.copy()
    rare[rare == "c"] = "b"
    rare[0] = "c"
    rare_class = Predictions(rare, p.y_pred, p.proba, p.classes)
    _assert_same(["roc_auc", "f1_macro"], rare_class, 80)
    assert np.isfinite(bootstrap_intervals(["roc_auc"], rare_class, 80)["roc_auc"].low)


def test_the_weighted_path_never_recomputes_a_metric_per_resample(monkeypatch):
    """Not a timing assertion: the counted work. Weighted metrics never call sklearn per resample;
    a metric without a weighted form falls back to one call per resample."""
    from ml_pipelines.core import bootstrap

    calls = []
    monkeypatch.setattr(bootstrap, "compute_metric", lambda *args, **kwargs: calls.append(args[0]) or np.nan)
    p = _classification(200, (0, 1), 5, False)
    assert set(bootstrap_intervals(["roc_auc", "log_loss", "f1"], p, samples=50)) == {"roc_auc", "log_loss", "f1"}
    assert calls == []
    monkeypatch.setattr(bootstrap, "weighted_metric", lambda *args: None)
    bootstrap_intervals(["roc_auc"], p, samples=50)
    assert calls == ["roc_auc"] * 50


# ---------------------------------------------------------------- draws in blocks, above BLOCK_ROWS


def test_up_to_block_rows_and_without_blocks_the_draws_are_the_indexing_bootstraps():
    """What a version recorded before blocked draws (no block size) reproduces with: every
    resample is rng.integers(0, n, n) over all rows, whatever n."""
    n = BLOCK_ROWS + 1
    rng = np.random.default_rng(3)
    expected = [np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(2)]
    got = np.concatenate(list(resample_counts(n, 2, seed=3, block_rows=None)))
    np.testing.assert_array_equal(got, np.stack(expected))
    small = BLOCK_ROWS // 4
    rng = np.random.default_rng(3)
    np.testing.assert_array_equal(next(resample_counts(small, 1, seed=3))[0],
                                  np.bincount(rng.integers(0, small, small), minlength=small))


def test_blocked_counts_are_a_resample_of_every_row_alike():
    """Above block_rows: each resample still draws n rows, every row equally likely (mean count 1,
    variance 1 - 1/n, as a multinomial), the same for a seed, and no block is favoured."""
    n, block_rows, samples = 1000, 64, 4000
    counts = np.concatenate(list(resample_counts(n, samples, seed=5, block_rows=block_rows)))
    assert counts.shape == (samples, n) and (counts.sum(axis=1) == n).all()
    assert counts.mean() == pytest.approx(1.0)
    assert np.abs(counts.mean(axis=0) - 1).max() < 0.1  # per row, over 4000 resamples: sd 0.016
    assert counts.var(axis=0).mean() == pytest.approx(1 - 1 / n, abs=0.02)
    last_block = counts[:, -(n % block_rows):].sum(axis=1)  # a short block (40 rows) gets its share
    assert last_block.mean() == pytest.approx(n % block_rows, rel=0.02)
    again = np.concatenate(list(resample_counts(n, samples, seed=5, block_rows=block_rows)))
    np.testing.assert_array_equal(counts, again)


@pytest.mark.parametrize("classes", [(0, 1), ("a", "b", "c")], ids=["binary", "multiclass"])
def test_blocked_intervals_agree_with_draws_over_all_rows_within_monte_carlo_error(classes):
    """Other resamples, the same distribution: bounds within 15% of the interval's width of those
    from draws over all rows (the indexing bootstrap's, tests above), with 2,000 resamples each (a
    bound's Monte Carlo error is about 2% of the width)."""
    p = _classification(2000, classes, seed=8, rounded=False)
    names = ["accuracy", "f1_macro", "log_loss", "roc_auc"]
    over_all_rows = bootstrap_intervals(names, p, 2000, seed=1, block_rows=None)
    blocked = bootstrap_intervals(names, p, 2000, seed=1, block_rows=128)
    assert set(blocked) == set(names)
    for name, expected in over_all_rows.items():
        width = expected.high - expected.low
        assert abs(blocked[name].low - expected.low) < 0.15 * width, name
        assert abs(blocked[name].high - expected.high) < 0.15 * width, name
    # other resamples indeed (accuracy and f1 take few values: their bounds may coincide)
    assert blocked["log_loss"] != over_all_rows["log_loss"] and blocked["roc_auc"] != over_all_rows["roc_auc"]
