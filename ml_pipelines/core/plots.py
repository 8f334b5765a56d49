"""Evaluation and drift plots as small PNGs (a few tens of KB, so the UI stays fast)."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from ml_pipelines.core.drift import DriftReport, ReferenceProfile
from ml_pipelines.core.evaluation import Evaluation
from ml_pipelines.core.utilisation import UtilisationReport

FIGSIZE = (4.2, 3.2)
DPI = 80
PLOTTED_DRIFT_FEATURES = 4
MAX_DRAWN_POINTS = 2_000  # per curve; the PNGs are 336 pixels wide
MAX_SCATTER_POINTS = 5_000  # per scatter plot, drawn at random (a fixed seed)


def _figure():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(figsize=FIGSIZE, dpi=DPI)


def _png(plt, fig) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def _positive_scores(evaluation: Evaluation) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(label, is_class, score) for the positive class, or one-vs-rest per class."""
    p = evaluation.predictions
    classes = list(p.classes or [])
    targets = classes[1:] if len(classes) == 2 else classes
    return [(str(c), p.y_true == c, p.proba[:, classes.index(c)]) for c in targets]


@dataclass(frozen=True)
class Curves:
    """A binary classifier's ROC and precision-recall curves from one sort of the scores."""

    fpr: np.ndarray
    tpr: np.ndarray
    precision: np.ndarray  # sklearn's precision_recall_curve order: recall falling to 0
    recall: np.ndarray

    @property
    def auc(self) -> float:
        return float(skm.auc(self.fpr, self.tpr))

    @property
    def average_precision(self) -> float:
        """sklearn's average_precision_score: the sum over thresholds of precision x recall gained."""
        return float(-np.sum(np.diff(self.recall) * self.precision[:-1]))


def curves(truth: np.ndarray, score: np.ndarray) -> Curves:
    """Both curves from one skm.roc_curve: roc_curve, precision_recall_curve and
    average_precision_score each sort every score again (three sorts, about 0.5 s each at 2M
    holdout rows). The precision-recall points are sklearn's, from the same true and false
    positive counts at each distinct threshold."""
    fpr, tpr, _ = skm.roc_curve(truth, score, drop_intermediate=False)
    positives = int(np.count_nonzero(truth))
    negatives = len(truth) - positives
    # roc_curve's first point (0, 0) stands for no threshold; with no positives (negatives) its
    # tpr (fpr) is NaN, and every count is 0
    tps = np.rint(tpr[1:] * positives) if positives else np.zeros(len(tpr) - 1)
    fps = np.rint(fpr[1:] * negatives) if negatives else np.zeros(len(fpr) - 1)
    predicted = tps + fps
    precision = np.divide(tps, predicted, out=np.zeros_like(tps), where=predicted != 0)
    recall = np.ones_like(tps) if positives == 0 else tps / positives
    return Curves(fpr, tpr, np.hstack((precision[::-1], 1.0)), np.hstack((recall[::-1], 0.0)))


def drawn_points(x: np.ndarray, y: np.ndarray, limit: int = MAX_DRAWN_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """At most about `limit` points of a curve, evenly spaced along its length (both ends kept).
    A PNG a few hundred pixels wide shows no more, and matplotlib takes seconds to draw millions."""
    if len(x) <= limit:
        return x, y
    along = np.concatenate(([0.0], np.cumsum(np.abs(np.diff(x)) + np.abs(np.diff(y)))))
    step = np.floor(along / along[-1] * (limit - 1)) if along[-1] > 0 else np.zeros(len(x))
    keep = np.flatnonzero(np.diff(step, prepend=-1.0))
    keep = np.union1d(keep, [len(x) - 1])
    return x[keep], y[keep]


def roc_curve_png(labelled: list[tuple[str, Curves]]) -> bytes:
    plt, fig, ax = _figure()
    for label, curve in labelled:
        ax.plot(*drawn_points(curve.fpr, curve.tpr), label=f"{label} (AUC {curve.auc:.3f})")
    ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    ax.legend(fontsize=7, loc="lower right")
    return _png(plt, fig)


def pr_curve_png(labelled: list[tuple[str, Curves]]) -> bytes:
    plt, fig, ax = _figure()
    for label, curve in labelled:
        ax.plot(*drawn_points(curve.recall, curve.precision), label=f"{label} (AP {curve.average_precision:.3f})")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall")
    ax.legend(fontsize=7)
    return _png(plt, fig)


def confusion_counts(y_true: np.ndarray, y_pred: np.ndarray, labels: list) -> np.ndarray:
    """skm.confusion_matrix's counts (rows actual, columns predicted; labels outside `labels` left
    out) by hashing the labels once: sklearn sorts every label twice to check them first."""
    actual = pd.Categorical(y_true, categories=labels).codes.astype(np.int64)
    predicted = pd.Categorical(y_pred, categories=labels).codes.astype(np.int64)
    both = (actual >= 0) & (predicted >= 0)
    pairs = actual[both] * len(labels) + predicted[both]
    return np.bincount(pairs, minlength=len(labels) ** 2).reshape(len(labels), len(labels))


def confusion_matrix_png(evaluation: Evaluation) -> bytes:
    p = evaluation.predictions
    labels = list(p.classes or [])
    matrix = confusion_counts(p.y_true, p.y_pred, labels)
    plt, fig, ax = _figure()
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), [str(label) for label in labels], fontsize=7)
    ax.set_yticks(range(len(labels)), [str(label) for label in labels], fontsize=7)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if matrix[i, j] > matrix.max() / 2 else "black")
    ax.set(xlabel="predicted", ylabel="actual", title="Confusion matrix")
    return _png(plt, fig)


def scattered(evaluation: Evaluation, limit: int = MAX_SCATTER_POINTS) -> tuple[np.ndarray, np.ndarray, str]:
    """(actual, predicted) for a scatter plot: every row, or `limit` drawn at random above that
    (matplotlib takes seconds for millions of markers, and they would fill the PNG); and a note
    saying so for the title."""
    p = evaluation.predictions
    rows = len(p.y_true)
    if rows <= limit:
        return p.y_true, p.y_pred, ""
    drawn = np.sort(np.random.default_rng(0).choice(rows, size=limit, replace=False))
    return p.y_true[drawn], p.y_pred[drawn], f" ({limit:,} of {rows:,} rows)"


def residuals_png(evaluation: Evaluation) -> bytes:
    actual, predicted, note = scattered(evaluation)
    plt, fig, ax = _figure()
    ax.scatter(predicted, actual - predicted, s=6, alpha=0.5)
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set(xlabel="predicted", ylabel="actual - predicted", title="Residuals" + note)
    return _png(plt, fig)


def predicted_vs_actual_png(evaluation: Evaluation) -> bytes:
    actual, predicted, note = scattered(evaluation)
    plt, fig, ax = _figure()
    ax.scatter(actual, predicted, s=6, alpha=0.5)
    low, high = float(min(actual.min(), predicted.min())), float(max(actual.max(), predicted.max()))
    ax.plot([low, high], [low, high], "--", color="grey", linewidth=0.8)
    ax.set(xlabel="actual", ylabel="predicted", title="Predicted vs actual" + note)
    return _png(plt, fig)


def importance_png(evaluation: Evaluation, metric: str, top: int = 12) -> bytes:
    rows = evaluation.importance[:top][::-1]
    plt, fig, ax = _figure()
    ax.barh([r[0] for r in rows], [r[1] for r in rows], xerr=[r[2] for r in rows], color="#4c72b0")
    ax.set(xlabel=f"{metric} drop when shuffled", title="Permutation importance")
    ax.tick_params(axis="y", labelsize=7)
    return _png(plt, fig)


def evaluation_plots(evaluation: Evaluation, task: str, metric: str) -> dict[str, bytes]:
    plots = {"feature_importance": importance_png(evaluation, metric)}
    if task == "classification":
        if evaluation.predictions.proba is not None:
            labelled = [(label, curves(truth, score)) for label, truth, score in _positive_scores(evaluation)]
            plots["roc_curve"] = roc_curve_png(labelled)
            plots["pr_curve"] = pr_curve_png(labelled)
        plots["confusion_matrix"] = confusion_matrix_png(evaluation)
    else:
        plots["residuals"] = residuals_png(evaluation)
        plots["predicted_vs_actual"] = predicted_vs_actual_png(evaluation)
    return plots


def drift_png(column: str, reference: np.ndarray | dict[str, int], current: np.ndarray | dict[str, int]) -> bytes:
    """Reference against current: overlaid densities (numeric) or side-by-side shares (categorical)."""
    plt, fig, ax = _figure()
    if isinstance(reference, dict):
        categories = sorted(set(reference) | set(current), key=lambda c: -reference.get(c, 0))[:15]
        ref_total, cur_total = max(sum(reference.values()), 1), max(sum(current.values()), 1)
        x = np.arange(len(categories))
        ax.bar(x - 0.2, [reference.get(c, 0) / ref_total for c in categories], 0.4, label="reference")
        ax.bar(x + 0.2, [current.get(c, 0) / cur_total for c in categories], 0.4, label="current")
        ax.set_xticks(x, categories, rotation=45, fontsize=7, ha="right")
        ax.set_ylabel("share")
    else:
        values = np.concatenate([reference, current])
        edges = np.histogram_bin_edges(values[np.isfinite(values)], bins=30)
        ax.hist(reference, bins=edges, density=True, alpha=0.5, label="reference")
        ax.hist(current, bins=edges, density=True, alpha=0.5, label="current")
        ax.set_ylabel("density")
    ax.set_title(f"Drift: {column}")
    ax.legend(fontsize=7)
    return _png(plt, fig)


def drift_plots(
    report: DriftReport, profile: ReferenceProfile, batch: pd.DataFrame, top: int = PLOTTED_DRIFT_FEATURES
) -> dict[str, bytes]:
    """One drift_png per watched feature, drifted and most shifted (by PSI) first, at most `top`."""
    ranked = sorted(
        (f for f in report.features if f.statistics),
        key=lambda f: (not f.drifted, -(f.statistics.get("psi") or 0)),
    )[:top]
    plots = {}
    for feature in ranked:
        if feature.kind == "numeric":
            reference = profile.numeric[feature.column].quantiles
            current = batch[feature.column].to_numpy(dtype=np.float64, na_value=np.nan)
            plots[feature.column] = drift_png(feature.column, reference, current[~np.isnan(current)])
        else:
            counts = batch[feature.column].dropna().astype("str").value_counts()
            plots[feature.column] = drift_png(
                feature.column, profile.categorical[feature.column].counts, {str(k): int(v) for k, v in counts.items()}
            )
    return plots


def performance_png(metric: str, entries: list[dict], champion_moves: list[tuple[str, str]]) -> bytes:
    """The champion's metric on each labelled production batch over time, with its interval;
    the challenger's beside it; a dashed line where the champion changed (moved_at, version)."""
    plt, fig, ax = _figure()
    times = [pd.Timestamp(e["landed_at"]) for e in entries]
    for version in dict.fromkeys(e["version"] for e in entries):
        points = [(t, e) for t, e in zip(times, entries) if e["version"] == version and e.get("value") is not None]
        if not points:
            continue
        xs = [t for t, _ in points]
        ys = [e["value"] for _, e in points]
        low = [e["value"] - (e.get("low") if e.get("low") is not None else e["value"]) for _, e in points]
        high = [(e.get("high") if e.get("high") is not None else e["value"]) - e["value"] for _, e in points]
        ax.errorbar(xs, ys, yerr=[low, high], marker="o", capsize=2, label=f"champion {version}")
    shadow = [(t, e["challenger_value"]) for t, e in zip(times, entries) if e.get("challenger_value") is not None]
    if shadow:
        ax.plot([t for t, _ in shadow], [v for _, v in shadow], "s--", alpha=0.7, label="challenger")
    for moved_at, version in champion_moves:
        ax.axvline(pd.Timestamp(moved_at), color="gray", linestyle=":", linewidth=1)
        ax.annotate(version[-6:], (pd.Timestamp(moved_at), ax.get_ylim()[1]), fontsize=6, rotation=90, va="top")
    ax.set_title(f"Production {metric}")
    ax.set_ylabel(metric)
    ax.tick_params(axis="x", labelsize=6, rotation=30)
    if entries:
        ax.legend(fontsize=6)
    return _png(plt, fig)


def utilisation_png(report: UtilisationReport) -> bytes:
    """Per group: CPU-hours used beside CPU-hours requested, and the p95 peak memory beside the
    largest memory request (requests only where the group's pods made them)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    groups = report.groups
    fig, (cpu_ax, memory_ax) = plt.subplots(1, 2, figsize=(2 * FIGSIZE[0], FIGSIZE[1]), dpi=DPI)
    x = np.arange(len(groups))
    names = [g.group for g in groups]
    cpu_ax.bar(x - 0.2, [g.cpu_hours for g in groups], 0.4, label="used")
    cpu_ax.bar(x + 0.2, [g.cpu_hours_requested for g in groups], 0.4, label="requested")
    cpu_ax.set(title="CPU-hours", xticks=x)
    memory_ax.bar(x - 0.2, [g.peak_rss_mib_p95 for g in groups], 0.4, label="peak RSS (p95)")
    memory_ax.bar(x + 0.2, [g.memory_requested_mib_max or 0 for g in groups], 0.4, label="requested")
    memory_ax.set(title="Memory (MiB)", xticks=x)
    for ax in (cpu_ax, memory_ax):
        ax.set_xticklabels(names, rotation=30, ha="right", fontsize=6)
        ax.legend(fontsize=6)
    return _png(plt, fig)
