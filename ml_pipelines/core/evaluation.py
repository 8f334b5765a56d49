"""Holdout evaluation: metrics with bootstrap confidence intervals, per-slice
metrics, permutation importance, and the same metrics for the champion on the
same rows (the promotion gate's input, core/gate.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from ml_pipelines.core.bootstrap import BLOCK_ROWS, LaidOutMetrics
from ml_pipelines.core.champion import Champion
from ml_pipelines.core.features import FeatureSet
from ml_pipelines.core.metrics import MetricError, compute_metric, compute_metrics, regression_of
from ml_pipelines.core.models import predict
from ml_pipelines.core.performance import PairedComparison, Scored, paired_bootstrap
from ml_pipelines.spec import PipelineSpec


@dataclass(frozen=True)
class Interval:
    low: float
    high: float


@dataclass(frozen=True)
class SliceMetrics:
    column: str
    value: str
    rows: int
    metrics: dict[str, float | None]


Predictions = Scored  # one model's predictions on the holdout rows


@dataclass
class Evaluation:
    metrics: dict[str, float]
    intervals: dict[str, Interval]
    slices: list[SliceMetrics]
    importance: list[tuple[str, float, float]]  # feature, mean drop, std
    test_rows: int
    predictions: Predictions = field(repr=False)
    champion_version: str | None = None
    champion_metrics: dict[str, float] | None = None
    champion_note: str | None = None  # how the champion's numbers were obtained
    plots: dict[str, bytes] = field(default_factory=dict, repr=False)  # name -> PNG
    champion_predictions: Predictions | None = field(default=None, repr=False)  # on the same rows
    comparison: PairedComparison | None = None  # candidate vs champion, paired bootstrap on the gate metric
    # how the intervals' resamples were drawn (core.bootstrap); None: over all rows at once, as
    # evaluations stored before blocked draws, which lack the field, were
    bootstrap_block_rows: int | None = None
    holdout: str = "random"  # how the holdout rows were chosen


def holdout_predictions(model: Pipeline, features: FeatureSet) -> Predictions:
    x, y = features.xy("test")
    y_pred, proba = predict(model, x, features.task)
    classes = tuple(model.classes_) if features.task == "classification" else None
    return Predictions(y.to_numpy(), y_pred, proba, classes)


def laid_out_metrics(names: list[str], p: Predictions) -> LaidOutMetrics:
    """p's rows laid out once for the named metrics (core.bootstrap): for intervals and slices."""
    return LaidOutMetrics(names, p.y_true, p.y_pred, p.proba, p.classes)


def bootstrap_intervals(
    names: list[str], p: Predictions, samples: int, seed: int = 0, level: float = 0.95, *,
    block_rows: int | None = BLOCK_ROWS, laid_out: LaidOutMetrics | None = None,
) -> dict[str, Interval]:
    """Percentile bootstrap over holdout rows; resamples where a metric is undefined (one class
    drawn) are left out of that metric's interval. Resamples are per-row counts (core.bootstrap),
    drawn in blocks of block_rows rows above that many (None: never)."""
    if samples == 0:
        return {}
    values = bootstrap_values(names, p, samples, seed, block_rows=block_rows, laid_out=laid_out)
    alpha = (1 - level) / 2
    return {
        name: Interval(float(np.quantile(v, alpha)), float(np.quantile(v, 1 - alpha)))
        for name, v in values.items()
        if len(v)
    }


def bootstrap_values(
    names: list[str], p: Predictions, samples: int, seed: int = 0, *, block_rows: int | None = BLOCK_ROWS,
    laid_out: LaidOutMetrics | None = None,
) -> dict[str, np.ndarray]:
    """Each metric on each resample where it is defined; laid_out: p's rows laid out for names, if at hand."""
    laid_out = laid_out if laid_out is not None else laid_out_metrics(names, p)
    values = laid_out.on_resamples(samples, seed, block_rows)
    return {name: v[~np.isnan(v)] for name, v in values.items()}


def slice_metrics(
    names: list[str], p: Predictions, frame: pd.DataFrame, columns: list[str], min_rows: int = 10, *,
    laid_out: LaidOutMetrics | None = None,
) -> list[SliceMetrics]:
    """Each metric on each value's rows of each slice column (values with min_rows at least), None
    where undefined (e.g. roc_auc on a slice of one class). Each slice's rows are taken in the order
    laid out once for all (core.bootstrap): sklearn would sort and check the labels once per slice
    and metric."""
    rows = []
    laid_out = laid_out if laid_out is not None else laid_out_metrics(names, p)
    for column in columns:
        codes, values = pd.factorize(frame[column].astype("str").fillna("<null>"))
        sizes = np.bincount(codes, minlength=len(values))
        kept = sorted((str(values[code]), code) for code in range(len(values)) if sizes[code] >= min_rows)
        if not kept:
            continue
        # each value's positions in the layout, increasing (a stable sort; a radix sort on small codes)
        codes = laid_out.laid_out(codes).astype(np.min_scalar_type(len(values)))
        by_value = np.split(np.argsort(codes, kind="stable"), np.cumsum(sizes)[:-1])
        for value, code in kept:
            results = laid_out.on_rows(by_value[code])
            metrics = {name: None if np.isnan(results[name]) else results[name] for name in names}
            rows.append(SliceMetrics(column, value, int(sizes[code]), metrics))
    return rows


def permutation_importance(
    model: Pipeline, features: FeatureSet, metric: str, repeats: int = 3, seed: int = 0, max_rows: int = 5000
) -> list[tuple[str, float, float]]:
    """Drop in `metric` when each raw input column is shuffled (positive = important)."""
    x, y = features.xy("test")
    x, y = x.iloc[:max_rows], y.iloc[:max_rows].to_numpy()
    classes = tuple(model.classes_) if features.task == "classification" else None
    base_pred, base_proba = predict(model, x, features.task)
    baseline = compute_metric(metric, y, base_pred, base_proba, classes)
    rng = np.random.default_rng(seed)
    rows = []
    for column in features.columns.inputs:
        drops = []
        for _ in range(repeats):
            shuffled = x.copy()
            shuffled[column] = x[column].to_numpy()[rng.permutation(len(x))]
            pred, proba = predict(model, shuffled, features.task)
            drops.append(regression_of(metric, compute_metric(metric, y, pred, proba, classes), baseline))
        rows.append((column, float(np.mean(drops)), float(np.std(drops))))
    return sorted(rows, key=lambda r: -r[1])


def evaluate(
    model: Pipeline,
    features: FeatureSet,
    metric_names: list[str],
    *,
    slices: list[str],
    importance_metric: str,
    bootstrap_samples: int = 200,
    champion: Champion | None = None,
    bootstrap_block_rows: int | None = BLOCK_ROWS,
) -> Evaluation:
    p = holdout_predictions(model, features)
    x_test, _ = features.xy("test")
    laid_out = laid_out_metrics(metric_names, p)  # for intervals and slices
    result = Evaluation(
        metrics=compute_metrics(metric_names, p.y_true, p.y_pred, p.proba, p.classes),
        intervals=bootstrap_intervals(metric_names, p, bootstrap_samples, block_rows=bootstrap_block_rows,
                                      laid_out=laid_out),
        slices=slice_metrics(metric_names, p, x_test, slices, laid_out=laid_out),
        importance=permutation_importance(model, features, importance_metric),
        test_rows=len(p.y_true),
        predictions=p,
        bootstrap_block_rows=bootstrap_block_rows,
    )
    del laid_out  # its copies of the holdout are not needed past here
    if champion is not None:
        result.champion_version = champion.version
        try:
            cp = holdout_predictions(champion.model, features)
            result.champion_metrics = compute_metrics(metric_names, cp.y_true, cp.y_pred, cp.proba, cp.classes)
            result.champion_predictions = cp
            result.champion_note = f"champion {champion.version} scored on the same {len(cp.y_true)} holdout rows"
        except (KeyError, ValueError, MetricError) as exc:
            # e.g. the spec gained a feature the champion never saw
            result.champion_metrics = dict(champion.recorded_metrics)
            result.champion_note = (
                f"champion {champion.version} cannot score these rows ({exc}); "
                "compared with the metrics in its version record"
            )
    return result


def evaluate_for_spec(
    spec: PipelineSpec, model: Pipeline, features: FeatureSet, champion: Champion | None,
    bootstrap_block_rows: int | None = BLOCK_ROWS,
) -> Evaluation:
    """evaluate with the spec's metrics, slices, gate metric (for importance) and bootstrap samples;
    with a champion scored on the same rows, the paired comparison the gate decides with.
    bootstrap_block_rows: as a version recorded it, to draw its resamples again."""
    result = evaluate(
        model,
        features,
        spec.evaluation_metrics,
        slices=list(spec.evaluation.slices),
        importance_metric=spec.gate_metric,
        bootstrap_samples=spec.evaluation.bootstrap_samples,
        champion=champion,
        bootstrap_block_rows=bootstrap_block_rows,
    )
    result.holdout = features.holdout
    if result.champion_predictions is not None and spec.evaluation.bootstrap_samples > 0:
        try:
            result.comparison = paired_bootstrap(
                spec.gate_metric, result.predictions, result.champion_predictions,
                samples=spec.evaluation.bootstrap_samples, confidence=spec.evaluation.gate.confidence,
                seed=spec.features.split.seed,
            )
        except MetricError:
            result.comparison = None  # e.g. one class in the holdout: the point comparison decides
    return result
