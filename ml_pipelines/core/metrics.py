"""Metric computation for classification and regression, by name."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn import metrics as skm

from ml_pipelines.core.errors import MetricError
from ml_pipelines.spec import METRIC_DIRECTIONS


def compute_metric(
    name: str,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray | None = None,
    classes: Sequence | None = None,
) -> float:
    if name not in METRIC_DIRECTIONS:
        raise MetricError(f"unknown metric {name!r}")
    if name == "rmse":
        return float(np.sqrt(skm.mean_squared_error(y_true, y_pred)))
    if name == "mae":
        return float(skm.mean_absolute_error(y_true, y_pred))
    if name == "r2":
        return float(skm.r2_score(y_true, y_pred))
    if name == "accuracy":
        return float(skm.accuracy_score(y_true, y_pred))
    labels = list(classes) if classes is not None else sorted(np.unique(y_true).tolist())
    binary = len(labels) == 2
    if name == "f1":
        if binary:
            return float(skm.f1_score(y_true, y_pred, pos_label=labels[1], labels=labels))
        return float(skm.f1_score(y_true, y_pred, average="weighted", labels=labels))
    if name == "f1_macro":
        return float(skm.f1_score(y_true, y_pred, average="macro", labels=labels))
    if proba is None:
        raise MetricError(f"{name} needs predicted probabilities")
    if name == "log_loss":
        return float(skm.log_loss(y_true, proba, labels=labels))
    # roc_auc
    present = np.unique(y_true)
    if len(present) < 2:
        raise MetricError(f"roc_auc is undefined: the labels hold only class {present[0]!r}")
    if binary:
        return float(skm.roc_auc_score(y_true == labels[1], proba[:, 1]))
    return float(skm.roc_auc_score(y_true, proba, multi_class="ovr", labels=labels))


def compute_metrics(
    names: Sequence[str],
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray | None = None,
    classes: Sequence | None = None,
) -> dict[str, float]:
    return {n: compute_metric(n, y_true, y_pred, proba, classes) for n in names}


def regression_of(metric: str, candidate: float, reference: float) -> float:
    """How much worse the candidate is than the reference (positive = worse)."""
    return reference - candidate if METRIC_DIRECTIONS[metric] else candidate - reference
