"""The bootstrap as per-row counts: one resample is how many times each holdout row is drawn.

Recomputing every metric on a resampled copy of the holdout costs a copy, a sort (roc_auc)
and sklearn's input checks per resample: 138 ms at 200k rows. Here the rows are prepared
once (sorted by score, one-hot labels, per-row losses), and each metric of a resample is a
few weighted sums, computed for a block of resamples at a time. The resamples are the
ones `rng.integers(0, n, n)` draws, in the same order, so the intervals are the ones the
indexing bootstrap gives (tests compare them). Our own code because neither sklearn
(a sample_weight, but one resample per call) nor scipy.stats.bootstrap (resampled copies)
evaluates many weightings of one prepared sample at once.

Above BLOCK_ROWS rows the counts are drawn block by block (resample_counts): the same
distribution (a multinomial over the rows), other resamples. A version records the block
size it was evaluated with, so that `ml-pipelines reproduce` draws the same resamples.

A metric that is undefined on a resample (roc_auc with one class drawn) is NaN there;
callers leave those resamples out, as the indexing bootstrap skips them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np

from ml_pipelines.core.errors import MetricError
from ml_pipelines.core.metrics import compute_metric

BLOCK_BYTES = 32 * 2**20  # memory for one block of resample counts
# rows per block of draws: its counts (1 MiB) stay in a core's cache while they are drawn; one
# draw over all rows writes its counts at random across n * 8 bytes, 19x the time for 10x the rows
BLOCK_ROWS = 2**17
WeightedMetric = Callable[[np.ndarray], np.ndarray]  # counts (resamples x rows) -> one value per resample
Key = TypeVar("Key")


def on_resamples(
    metrics: Mapping[Key, WeightedMetric], n: int, samples: int, seed: int = 0, layout: np.ndarray | None = None,
    block_rows: int | None = BLOCK_ROWS,
) -> dict[Key, np.ndarray]:
    """Every metric on the same `samples` resamples of n rows (NaN where undefined). With a layout
    (see resample_counts), the metrics are built on the rows taken in that order."""
    values: dict[Key, list[np.ndarray]] = {key: [] for key in metrics}
    for counts in drawn_ahead(n, samples, seed, layout, block_rows):
        for key, metric in metrics.items():
            values[key].append(metric(counts))
    return {key: np.concatenate(blocks) if blocks else np.empty(0) for key, blocks in values.items()}


class LaidOutMetrics:
    """The named weighted metrics of one model's predictions, with the rows laid out once for a
    binary roc_auc when one is asked for (auc_layout): weights given to them are in that order."""

    def __init__(
        self, names: Sequence[str], y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray | None,
        classes: Sequence | None,
    ):
        self.layout = auc_layout(y_true, proba, classes) if "roc_auc" in names else None
        if self.layout is not None:
            y_true, y_pred, proba = y_true[self.layout], y_pred[self.layout], proba[self.layout]
        self.names, self.classes = list(names), classes
        self.y_true, self.y_pred, self.proba = y_true, y_pred, proba

    @functools.cached_property
    def metrics(self) -> dict[str, WeightedMetric]:
        """Each metric as a function of counts over all rows, in the layout's order."""
        return {name: metric_function(name, self.y_true, self.y_pred, self.proba, self.classes) for name in self.names}

    def laid_out(self, per_row: np.ndarray) -> np.ndarray:
        """Per-row values in the layout's order."""
        return per_row if self.layout is None else per_row[self.layout]

    def on_rows(self, rows: np.ndarray) -> dict[str, float]:
        """Each metric on a subset of the rows (positions in the layout's order, increasing; NaN
        where undefined). A subset of laid-out rows is laid out: no sort."""
        proba = None if self.proba is None else self.proba[rows]
        every_row = np.ones((1, len(rows)))
        return {
            name: float(metric_function(name, self.y_true[rows], self.y_pred[rows], proba, self.classes)(every_row)[0])
            for name in self.names
        }

    def on_resamples(self, samples: int, seed: int = 0, block_rows: int | None = BLOCK_ROWS) -> dict[str, np.ndarray]:
        """Each metric on the same resamples of all rows (NaN where undefined)."""
        return on_resamples(self.metrics, len(self.y_true), samples, seed, self.layout, block_rows)


def metrics_on_resamples(
    names: Sequence[str], y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray | None,
    classes: Sequence | None, samples: int, seed: int = 0, block_rows: int | None = BLOCK_ROWS,
) -> dict[str, np.ndarray]:
    """Each named metric of one model's predictions on the same resamples (NaN where undefined)."""
    return LaidOutMetrics(names, y_true, y_pred, proba, classes).on_resamples(samples, seed, block_rows)


def metric_function(
    name: str, y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray | None, classes: Sequence | None
) -> WeightedMetric:
    """The weighted metric, or for one this module does not weight, the metric recomputed on each
    resample's rows."""
    weighted = weighted_metric(name, y_true, y_pred, proba, classes)
    if weighted is not None:
        return weighted

    def by_indexing(counts: np.ndarray) -> np.ndarray:
        results = []
        for row_counts in counts:
            idx = np.repeat(np.arange(len(row_counts)), row_counts.astype(int))
            try:
                results.append(compute_metric(name, y_true[idx], y_pred[idx],
                                              proba[idx] if proba is not None else None, classes))
            except (MetricError, ValueError):
                results.append(np.nan)
        return np.asarray(results, dtype=float)

    return by_indexing


def resample_counts(
    n: int, samples: int, seed: int, layout: np.ndarray | None = None, block_rows: int | None = BLOCK_ROWS
) -> Iterator[np.ndarray]:
    """Blocks of resamples as counts (resamples x n). Up to block_rows rows (any number with None),
    each resample is drawn as rng.integers(0, n, n), the indexing bootstrap's draws. With a layout
    (a permutation of the rows), column j counts row layout[j]: the counts come out in the order
    the metrics want them, so no metric gathers them per resample. Above block_rows, see
    _blocked_counts; every row is as likely, so the counts are in the layout's order as drawn."""
    draws = _Draws(n, samples, seed, layout, block_rows)
    for size in draws.sizes:
        counts = np.empty((size, n))
        draws.fill(counts)
        yield counts


def drawn_ahead(
    n: int, samples: int, seed: int, layout: np.ndarray | None = None, block_rows: int | None = BLOCK_ROWS
) -> Iterator[np.ndarray]:
    """resample_counts' blocks, each next one drawn in a background thread while the caller works
    on the one before (numpy's draws and the metrics' BLAS calls run without the GIL). The blocks
    are two arrays allocated here and drawn into by turns: a block is overwritten once the block
    after it is asked for, so use each before asking for the next. (Blocks allocated in the
    thread came from its own malloc arena, which unmapped and faulted in a fresh 32 MiB for every
    other block: 1.1M page faults at 2M rows, more time than the overlap saved.)"""
    draws = _Draws(n, samples, seed, layout, block_rows)
    if not draws.sizes:
        return
    buffers = [np.empty((draws.sizes[0], n)) for _ in draws.sizes[:2]]
    with ThreadPoolExecutor(1, thread_name_prefix="bootstrap-draws") as pool:
        pending = pool.submit(draws.fill, buffers[0])
        for index, size in enumerate(draws.sizes):
            pending.result()
            if index + 1 < len(draws.sizes):
                pending = pool.submit(draws.fill, buffers[(index + 1) % 2][: draws.sizes[index + 1]])
            yield buffers[index % 2][:size]


class _Draws:
    """One seed's resamples, block by block (BLOCK_BYTES of counts each), drawn into the arrays
    given to fill in turn."""

    def __init__(self, n: int, samples: int, seed: int, layout: np.ndarray | None, block_rows: int | None):
        self.rng, self.n, self.block_rows = np.random.default_rng(seed), n, block_rows
        block = max(1, min(samples, BLOCK_BYTES // (8 * max(n, 1))))
        self.sizes = [min(block, samples - done) for done in range(0, samples, block)]
        self.blocked = block_rows is not None and n > block_rows
        self.position = None if layout is None or self.blocked else _inverse(layout)

    def fill(self, counts: np.ndarray) -> None:
        """The next len(counts) resamples' counts, into counts."""
        for row in counts:
            if self.blocked:
                _blocked_counts(self.rng, self.n, self.block_rows, row)
            else:
                drawn = self.rng.integers(0, self.n, self.n)
                row[:] = np.bincount(drawn if self.position is None else self.position[drawn], minlength=self.n)


def _blocked_counts(rng: np.random.Generator, n: int, block_rows: int, out: np.ndarray) -> None:
    """One resample's counts, in cache-sized blocks of rows: how many of the n draws land in each
    block (a multinomial by block size), then those draws within their block. The counts have the
    distribution of n draws over all rows (a multinomial split into blocks stays one), and each
    block's counting stays in cache."""
    starts = np.arange(0, n, block_rows)
    sizes = np.minimum(block_rows, n - starts)
    for start, size, drawn in zip(starts, sizes, rng.multinomial(n, sizes / n), strict=True):
        out[start : start + size] = np.bincount(rng.integers(0, size, drawn), minlength=size)


def weighted_metric(
    name: str, y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray | None, classes: Sequence | None
) -> WeightedMetric | None:
    """The metric as a function of resample counts, or None where only the indexing bootstrap has it."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if name in ("mae", "rmse", "r2"):
        return _regression(name, y_true.astype(float), y_pred.astype(float))
    if name == "accuracy":
        correct = (y_true == y_pred).astype(float)
        return lambda counts: counts @ correct / counts.sum(axis=1)
    labels = list(classes) if classes is not None else sorted(np.unique(y_true).tolist())
    if name in ("f1", "f1_macro"):
        return _f1(name, y_true, y_pred, labels)
    if proba is None:
        return None
    if name == "log_loss":
        return _log_loss(y_true, np.asarray(proba), labels)
    if name == "roc_auc":
        return _roc_auc(y_true, np.asarray(proba), labels)
    return None


def _regression(name: str, y_true: np.ndarray, y_pred: np.ndarray) -> WeightedMetric:
    error = y_pred - y_true

    def metric(counts: np.ndarray) -> np.ndarray:
        total = counts.sum(axis=1)
        if name == "mae":
            return counts @ np.abs(error) / total
        squared = counts @ (error**2)
        if name == "rmse":
            return np.sqrt(squared / total)
        mean = counts @ y_true / total
        spread = (counts * (y_true[None, :] - mean[:, None]) ** 2).sum(axis=1)
        # sklearn's r2 where the drawn targets are constant: 1 for a perfect fit, else 0
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(spread > 0, 1 - squared / spread, np.where(squared == 0, 1.0, 0.0))

    return metric


def _f1(name: str, y_true: np.ndarray, y_pred: np.ndarray, labels: list) -> WeightedMetric:
    """Per-class F1 = 2 tp / (2 tp + fp + fn) (0 where nothing is drawn or predicted, as sklearn).
    Binary f1 is the second label's alone."""
    binary = len(labels) == 2
    scored = labels[1:] if binary and name == "f1" else labels
    # a 0/1 vector per class and count, each summed by its own matrix-vector product: with the
    # few resamples a block holds at 2M rows, 5x faster than one product with an (n, classes) matrix
    hits = [((y_true == c) & (y_pred == c)).astype(float) for c in scored]
    predicted = [(y_pred == c).astype(float) for c in scored]
    actual = [(y_true == c).astype(float) for c in scored]

    def metric(counts: np.ndarray) -> np.ndarray:
        tp, pred, true = (np.stack([counts @ v for v in vectors], axis=1) for vectors in (hits, predicted, actual))
        denominator = pred + true
        with np.errstate(divide="ignore", invalid="ignore"):
            per_class = np.where(denominator > 0, 2 * tp / denominator, 0.0)
        if name == "f1_macro":
            return per_class.mean(axis=1)
        if binary:
            return per_class[:, 0]
        support = true.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(support > 0, (per_class * true).sum(axis=1) / support, 0.0)

    return metric


def _log_loss(y_true: np.ndarray, proba: np.ndarray, labels: list) -> WeightedMetric:
    """sklearn's per-row loss: -log of the true class's probability, clipped to [eps, 1 - eps]."""
    ordered = np.unique(np.asarray(labels))  # sklearn one-hot encodes in sorted label order
    column = np.searchsorted(ordered, y_true)
    eps = np.finfo(proba.dtype).eps
    loss = -np.log(np.clip(proba[np.arange(len(y_true)), column], eps, 1 - eps)).astype(float)
    return lambda counts: counts @ loss / counts.sum(axis=1)


def _roc_auc(y_true: np.ndarray, proba: np.ndarray, labels: list) -> WeightedMetric:
    """Binary: AUC of the second label's probability. More classes: the mean of one-vs-rest
    AUCs (sklearn's ovr, macro); undefined where a resample draws a class not at all."""
    if len(labels) == 2:
        return _binary_auc(y_true == labels[1], proba[:, 1])
    per_class = [_binary_auc(y_true == label, proba[:, i]) for i, label in enumerate(labels)]
    return lambda counts: np.mean([auc(counts) for auc in per_class], axis=0)


def _inverse(layout: np.ndarray) -> np.ndarray:
    """Where each row is in the layout; int32 where it fits (the lookup per draw is random access,
    and half the bytes keep more of it in cache)."""
    position = np.empty(len(layout), dtype=np.int32 if len(layout) < 2**31 else np.int64)
    position[layout] = np.arange(len(layout), dtype=position.dtype)
    return position


def auc_layout(y_true: np.ndarray, proba: np.ndarray | None, classes: Sequence | None) -> np.ndarray | None:
    """For a binary task with probabilities: the row order in which the weighted roc_auc reads its
    counts without a gather (negatives, then positives, each by score); None otherwise."""
    labels = list(classes) if classes is not None else sorted(np.unique(y_true).tolist())
    if proba is None or len(labels) != 2:
        return None
    return _layout(np.asarray(y_true) == labels[1], np.asarray(proba)[:, 1])


def _layout(positive: np.ndarray, score: np.ndarray) -> np.ndarray:
    return np.lexsort((score, positive))


def _is_laid_out(positive: np.ndarray, score: np.ndarray) -> bool:
    """Whether the rows already are in _layout's order (one pass; a sort would be n log n)."""
    positive = positive.astype(bool)
    negatives = len(positive) - int(np.count_nonzero(positive))
    return bool(
        not positive[:negatives].any()
        and np.all(score[1:negatives] >= score[: max(negatives - 1, 0)])
        and np.all(score[negatives + 1 :] >= score[negatives:-1])
    )


def _binary_auc(positive: np.ndarray, score: np.ndarray) -> WeightedMetric:
    """Mann-Whitney AUC with ties counted half. With the rows laid out as negatives then positives,
    each by score (_layout), a positive's wins are the drawn negatives below its score plus half
    those equal to it: two lookups in the running count of drawn negatives, found once by
    binary search. Rows in any other order are gathered into that layout per resample."""
    laid_out = _is_laid_out(positive, score)
    order = np.arange(len(score)) if laid_out else _layout(positive, score)
    negatives = len(positive) - int(np.count_nonzero(positive))
    negative_scores, positive_scores = score[order[:negatives]], score[order[negatives:]]
    below = np.searchsorted(negative_scores, positive_scores, side="left")
    up_to = np.searchsorted(negative_scores, positive_scores, side="right")
    tied = np.flatnonzero(up_to != below)  # positives whose score some negative has
    wins_of = _wins_with_few_ties(below, up_to, tied) if len(tied) < len(below) / 2 else _wins(below, up_to)

    def metric(counts: np.ndarray) -> np.ndarray:
        drawn = counts if laid_out else counts[:, order]
        running = np.zeros((len(drawn), negatives + 1))
        np.cumsum(drawn[:, :negatives], axis=1, out=running[:, 1:])
        drawn_positives = drawn[:, negatives:]
        wins = wins_of(drawn_positives, running)
        pairs = drawn_positives.sum(axis=1) * running[:, -1]
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(pairs > 0, wins / pairs, np.nan)

    return metric


# Both give the same wins to the last bit: every term is a whole or half number of draws and
# every sum is at most n**2 (under 2**53 up to 90M holdout rows), so the sums are exact in any order.
def _wins(below: np.ndarray, up_to: np.ndarray) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Each positive's drawn negatives below it, plus half those tied with it."""
    return lambda drawn_positives, running: 0.5 * np.einsum(
        "ij,ij->i", drawn_positives, running[:, below] + running[:, up_to])


def _wins_with_few_ties(
    below: np.ndarray, up_to: np.ndarray, tied: np.ndarray
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """_wins with one gather of the running counts over all positives, and the ties' halves
    gathered for the tied positives alone."""
    tied_below, tied_up_to = below[tied], up_to[tied]

    def wins(drawn_positives: np.ndarray, running: np.ndarray) -> np.ndarray:
        total = np.einsum("ij,ij->i", drawn_positives, running[:, below])
        if len(tied):
            ties = running[:, tied_up_to] - running[:, tied_below]
            total += 0.5 * np.einsum("ij,ij->i", drawn_positives[:, tied], ties)
        return total

    return wins
