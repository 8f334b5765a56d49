"""How well a model predicts on labelled rows: metrics with bootstrap intervals, the
paired bootstrap that compares two models on the same rows (the promotion gate and
`registry promote --from-shadow` decide with it), and whether a version's production
performance still holds against its own holdout value."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from ml_pipelines.core.bootstrap import WeightedMetric, auc_layout, metric_function, metrics_on_resamples, on_resamples
from ml_pipelines.core.errors import MetricError
from ml_pipelines.core.metrics import compute_metric, regression_of
from ml_pipelines.core.models import predict
from ml_pipelines.core.storage import ObjectStore
from ml_pipelines.spec import higher_is_better


@dataclass(frozen=True)
class Scored:
    """One model's predictions on some labelled rows."""

    y_true: np.ndarray
    y_pred: np.ndarray
    proba: np.ndarray | None
    classes: tuple | None

    def metric(self, name: str) -> float:
        return compute_metric(name, self.y_true, self.y_pred, self.proba, self.classes)

    def on_resamples(self, name: str) -> WeightedMetric:
        return metric_function(name, self.y_true, self.y_pred, self.proba, self.classes)

    def rows(self, positions: np.ndarray) -> Scored:
        proba = self.proba[positions] if self.proba is not None else None
        return Scored(self.y_true[positions], self.y_pred[positions], proba, self.classes)


@dataclass(frozen=True)
class PairedComparison:
    """Candidate against reference on the same rows, resampled together.

    loss = how much worse the candidate is (positive = worse, in the metric's units);
    `loss_bound` is the one-sided upper bound at `confidence`: the candidate is not
    worse than the reference by more than m at that confidence when loss_bound <= m."""

    metric: str
    rows: int
    candidate: float
    reference: float
    loss: float
    loss_low: float  # two-sided interval of the loss at `confidence`
    loss_high: float
    loss_bound: float
    confidence: float
    samples: int  # resamples that could be scored (a resample missing a class is skipped)

    def not_worse_by_more_than(self, max_regression: float) -> bool:
        return self.loss_bound <= max_regression + 1e-12

    def describe(self) -> str:
        direction = "worse" if self.loss > 0 else "better" if self.loss < 0 else "equal"
        return (
            f"{self.metric} {self.candidate:.4f} vs {self.reference:.4f} on the same {self.rows} rows: "
            f"{direction} by {abs(self.loss):.4f} ({self.confidence:.0%} interval of the loss "
            f"[{self.loss_low:.4f}, {self.loss_high:.4f}], one-sided bound {self.loss_bound:.4f}, "
            f"{self.samples} paired resamples)"
        )


def paired_bootstrap(
    metric: str, candidate: Scored, reference: Scored, *, samples: int = 500, confidence: float = 0.95, seed: int = 0
) -> PairedComparison:
    """Resample rows with replacement; score both models on the same resample each time."""
    if len(candidate.y_true) != len(reference.y_true) or not np.array_equal(candidate.y_true, reference.y_true):
        raise ValueError("a paired comparison needs both models scored on the same labelled rows")
    n = len(candidate.y_true)
    if n == 0:
        raise MetricError(f"{metric}: no labelled rows to compare on")
    point = regression_of(metric, candidate.metric(metric), reference.metric(metric))
    # rows laid out for the candidate's roc_auc (core.bootstrap.auc_layout): one of the two reads its counts directly
    layout = auc_layout(candidate.y_true, candidate.proba, candidate.classes) if metric == "roc_auc" else None
    pair = {"candidate": candidate, "reference": reference}
    if layout is not None:
        pair = {role: scored.rows(layout) for role, scored in pair.items()}
    both = on_resamples({role: scored.on_resamples(metric) for role, scored in pair.items()}, n, samples, seed, layout)
    values = regression_of(metric, both["candidate"], both["reference"])
    values = values[~np.isnan(values)]
    if not len(values):
        values = np.asarray([point])  # e.g. a single-class resample every time: the point estimate is all there is
    alpha = (1 - confidence) / 2
    return PairedComparison(
        metric=metric,
        rows=n,
        candidate=candidate.metric(metric),
        reference=reference.metric(metric),
        loss=float(point),
        loss_low=float(np.quantile(values, alpha)),
        loss_high=float(np.quantile(values, 1 - alpha)),
        loss_bound=float(np.quantile(values, confidence)),
        confidence=confidence,
        samples=len(values),
    )


@dataclass(frozen=True)
class MetricEstimate:
    value: float | None
    low: float | None
    high: float | None


def estimate(metric: str, scored: Scored, *, samples: int = 200, level: float = 0.95, seed: int = 0) -> MetricEstimate:
    """The metric on these rows with a percentile bootstrap interval; None where it is undefined
    (e.g. roc_auc on rows of one class)."""
    try:
        value = scored.metric(metric)
    except (MetricError, ValueError):
        return MetricEstimate(None, None, None)
    values = metrics_on_resamples(
        [metric], scored.y_true, scored.y_pred, scored.proba, scored.classes, samples, seed
    )[metric]
    values = values[~np.isnan(values)]
    if not len(values):
        return MetricEstimate(value, None, None)
    alpha = (1 - level) / 2
    return MetricEstimate(value, float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha)))


@dataclass(frozen=True)
class PerformanceVerdict:
    """Does a version's production metric hold against its own holdout value?"""

    metric: str
    value: float | None
    reference: float | None  # the version's holdout value
    max_drop: float
    rows: int
    min_rows: int
    passed: bool
    reason: str

    @property
    def drop(self) -> float | None:
        if self.value is None or self.reference is None:
            return None
        return regression_of(self.metric, self.value, self.reference)


def performance_holds(
    metric: str, value: float | None, reference: float | None, *, rows: int, max_drop: float, min_rows: int
) -> PerformanceVerdict:
    """Fails only on evidence: at least min_rows labelled rows and a drop beyond max_drop."""

    def verdict(passed: bool, reason: str) -> PerformanceVerdict:
        return PerformanceVerdict(metric, value, reference, max_drop, rows, min_rows, passed, reason)

    if rows < min_rows:
        return verdict(True, f"{rows} labelled rows, fewer than min_rows {min_rows}: not enough evidence yet")
    if value is None:
        return verdict(True, f"{metric} is undefined on these {rows} labelled rows")
    if reference is None:
        return verdict(True, f"the version records no holdout {metric} to compare with")
    drop = regression_of(metric, value, reference)
    word = "higher" if higher_is_better(metric) else "lower"
    if drop > max_drop + 1e-12:
        return verdict(
            False,
            f"{metric} {value:.4f} on {rows} labelled production rows is {drop:.4f} worse than the holdout "
            f"{reference:.4f} (allowed drop {max_drop:.4f}; {word} is better)",
        )
    return verdict(True, f"{metric} {value:.4f} on {rows} labelled rows vs holdout {reference:.4f}: within {max_drop:.4f}")


# ---------------------------------------------------------------- on labelled production rows


def score(model, frame: pd.DataFrame, target: str, task: str) -> Scored:
    """A model's predictions on labelled rows (the target column holds the labels)."""
    x = frame.drop(columns=[target])
    y_pred, proba = predict(model, x, task)
    classes = tuple(model.classes_) if task == "classification" else None
    y_true = frame[target].to_numpy()
    if classes is not None and len(classes) and not isinstance(classes[0], str):
        y_true = pd.to_numeric(frame[target], errors="coerce").to_numpy()  # labels from JSON or CSV text
    return Scored(y_true, y_pred, proba, classes)


@dataclass(frozen=True)
class VersionPerformance:
    version: str
    role: str  # champion | challenger
    metrics: dict[str, MetricEstimate]


@dataclass(frozen=True)
class ProductionPerformance:
    """One batch's labelled rows scored by the champion (and the challenger, side by side)."""

    batch: str
    landed_at: str
    rows: int
    label_delay_hours: float | None
    champion: VersionPerformance
    verdict: PerformanceVerdict
    challenger: VersionPerformance | None = None
    comparison: PairedComparison | None = None  # challenger vs champion on the same rows

    def history_entry(self, metric: str, measured_at: str) -> dict[str, object]:
        entry = {
            "measured_at": measured_at, "batch": self.batch, "landed_at": self.landed_at, "rows": self.rows,
            "metric": metric, "version": self.champion.version, "passed": self.verdict.passed,
            **_estimate_fields("", self.champion.metrics.get(metric)),
        }
        if self.challenger is not None:
            entry["challenger_version"] = self.challenger.version
            entry.update(_estimate_fields("challenger_", self.challenger.metrics.get(metric)))
        return entry


def _estimate_fields(prefix: str, value: MetricEstimate | None) -> dict[str, float | None]:
    value = value or MetricEstimate(None, None, None)
    return {f"{prefix}value": value.value, f"{prefix}low": value.low, f"{prefix}high": value.high}


def version_performance(
    version: str, role: str, scored: Scored, metrics: list[str], *, samples: int, seed: int = 0
) -> VersionPerformance:
    return VersionPerformance(version, role, {m: estimate(m, scored, samples=samples, seed=seed) for m in metrics})


class PerformanceHistory:
    """Every production-performance measurement of a pipeline, append-only in an object
    store (the registry's): `<pipeline>/performance/<time>-<n>.json`."""

    def __init__(self, store: ObjectStore, pipeline: str):
        self.store = store
        self.pipeline = pipeline

    def append(self, entry: dict[str, object]) -> None:
        stamp = f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{secrets.token_hex(2)}"
        self.store.put(f"{self.pipeline}/performance/{stamp}.json", json.dumps(entry, default=str).encode())

    def entries(self) -> list[dict[str, object]]:
        """The latest measurement per (batch, version), in landing order."""
        latest: dict[tuple, dict] = {}
        for key in self.store.list(f"{self.pipeline}/performance/"):
            entry = json.loads(self.store.get(key))
            latest[(entry["batch"], entry["version"])] = entry  # keys list in time order
        return sorted(latest.values(), key=lambda e: (str(e["landed_at"]), str(e["batch"])))

    def for_version(self, version: str) -> list[dict[str, object]]:
        return [e for e in self.entries() if e["version"] == version]
