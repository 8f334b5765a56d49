"""Model selection: k-fold cross-validation over every candidate and grid point,
latency and size limits, and a refit of the winner on the whole training split.

A ValueError from fitting or predicting (scikit-learn's "needs samples of at least 2
classes", "Input X contains infinity", a bad parameter value) fails the same way on
every attempt, so it becomes a ModelError naming the candidate (and the columns with
infinite values, or the classes present) and is not retried; other errors (memory,
a device) are left to the retry policy. A candidate that fails so during
cross-validation is dropped with its error (a grid point whose solver refuses its
penalty must not sink the grid); when every candidate failed, the first failure is
raised, and when every candidate was dropped for any mix of reasons, a SelectionError
naming each. Either error carries the candidates' results (candidate_results_of), so
the experiment history records a run that selected nothing too."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline

from ml_pipelines.core.errors import InputError, ModelError, SelectionError
from ml_pipelines.core.features import FeatureSet
from ml_pipelines.core.metrics import compute_metric
from ml_pipelines.core.model_io import serialized_size_bytes
from ml_pipelines.core.models import Candidate, build_model, expand_candidates, predict
from ml_pipelines.spec import METRIC_DIRECTIONS, PipelineSpec, TorchModel

LATENCY_BATCH_ROWS = 1000


@dataclass
class CandidateResult:
    label: str
    model_name: str
    framework: str
    params: dict
    fold_scores: list[float]
    fit_seconds: float
    latency_ms_per_row: float
    size_mb: float
    # every reason it cannot be selected: over max_latency_ms, over max_size_mb, failed to fit
    drop_reasons: tuple[str, ...] = ()
    error: str | None = None  # the failure, when it failed to fit or score (no scores then)
    # everything the estimator was built with: the spec's params (torch: its settings) and the grid point
    model_params: dict = field(default_factory=dict)

    @property
    def dropped(self) -> str | None:
        """Every reason it was dropped, joined by "; "; None when it competed."""
        return "; ".join(self.drop_reasons) if self.drop_reasons else None

    @property
    def failed(self) -> bool:
        return self.error is not None

    @property
    def mean(self) -> float:
        return float(np.mean(self.fold_scores)) if self.fold_scores else float("nan")

    @property
    def std(self) -> float:
        return float(np.std(self.fold_scores)) if self.fold_scores else float("nan")


@dataclass
class SelectionResult:
    metric: str
    cv_folds: int
    results: list[CandidateResult]
    best: CandidateResult
    model: Pipeline = field(repr=False)
    refit_seconds: float = 0.0
    cv_rows: int = 0  # the training rows cross-validation ran on (a sample when fewer than train_rows)
    train_rows: int = 0  # the rows the winner was refit on

    def describe_sample(self) -> str:
        if self.cv_rows >= self.train_rows:
            return f"{self.cv_folds}-fold cross-validation on all {self.train_rows} training rows"
        return (f"{self.cv_folds}-fold cross-validation on a sample of {self.cv_rows} of the {self.train_rows} "
                f"training rows (selection.sample_rows); the winner refit on all of them")

    def table_markdown(self) -> str:
        lines = [
            f"| candidate | {self.metric} mean | std | latency ms/row | size MB | fit s | status |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in self.results:
            status = "**selected**" if r is self.best else (f"dropped: {r.dropped}" if r.dropped else "")
            status = status.replace("|", "\\|").replace("\n", " ")
            lines.append(
                f"| {r.label} | {_shown(r.mean, 4)} | {_shown(r.std, 4)} | {_shown(r.latency_ms_per_row, 4)} | "
                f"{_shown(r.size_mb, 3)} | {_shown(r.fit_seconds, 2)} | {status} |"
            )
        return "\n".join(lines)


def _shown(value: float, digits: int) -> str:
    """A number for the table; `-` for one a failed candidate never got."""
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def candidate_results_of(exc: BaseException) -> tuple[CandidateResult, ...]:
    """The candidates' results a selection error carries (empty for any other error)."""
    return tuple(getattr(exc, "candidate_results", ()))


def _carrying(exc: Exception, results: list[CandidateResult]) -> Exception:
    exc.candidate_results = tuple(results)  # type: ignore[attr-defined]
    return exc


def cv_sample(y: pd.Series, task: str, sample_rows: int | None, seed: int = 0) -> np.ndarray:
    """Positions of the training rows (targets `y`) cross-validation runs on: all of them, or a sample
    of sample_rows (stratified by class for classification, so rare classes keep their share)."""
    positions = np.arange(len(y))
    if sample_rows is None or len(y) <= sample_rows:
        return positions
    stratify = y.to_numpy() if task == "classification" and y.value_counts().min() >= 2 else None
    sample, _ = train_test_split(positions, train_size=sample_rows, stratify=stratify, random_state=seed)
    return np.sort(sample)


def _folds(features: FeatureSet, y: pd.Series, cv_folds: int):
    if features.task == "classification":
        smallest = int(y.value_counts().min())
        if smallest >= cv_folds:
            return StratifiedKFold(cv_folds, shuffle=True, random_state=0).split(y, y)
        if smallest < 2:
            raise SelectionError(f"cross-validation: a class of {features.target!r} has only {smallest} row")
        raise SelectionError(
            f"selection.cv_folds={cv_folds} is more than the {smallest} rows of the rarest class of "
            f"{features.target!r}; lower cv_folds"
        )
    return KFold(cv_folds, shuffle=True, random_state=0).split(y, y)


def measure_latency_ms_per_row(model: Pipeline, frame: pd.DataFrame, task: str) -> float:
    batch = frame.iloc[:LATENCY_BATCH_ROWS]
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        predict(model, batch, task)
        best = min(best, time.perf_counter() - start)
    return best * 1000 / len(batch)


def _fit(model: Pipeline, x: pd.DataFrame, y: pd.Series, log: Callable[[str], None] | None) -> Pipeline:
    final = model[-1]
    if log is not None and hasattr(final, "log_fn"):
        final.log_fn = log
    return model.fit(x, y)


@contextmanager
def deterministic_failures(candidate: Candidate, x: pd.DataFrame, y: pd.Series, task: str) -> Iterator[None]:
    """Turn a ValueError raised while fitting or scoring `candidate` into a ModelError naming it."""
    try:
        yield
    except InputError:
        raise
    except ValueError as exc:
        raise ModelError(
            f"models.{candidate.model.name}: candidate {candidate.label} failed on this data: {exc}"
            + _diagnosis(x, y, task)
        ) from exc


def _diagnosis(x: pd.DataFrame, y: pd.Series, task: str) -> str:
    notes = []
    numeric = [c for c in x.columns if pd.api.types.is_numeric_dtype(x[c]) and not pd.api.types.is_bool_dtype(x[c])]
    infinite = [str(c) for c in numeric if np.isinf(x[c].to_numpy(dtype=float, na_value=np.nan)).any()]
    if infinite:
        notes.append(f"columns with infinite values: {', '.join(infinite)}")
    if task == "classification" and y.nunique() < 2:
        notes.append(f"the target {y.name!r} has {y.nunique()} class(es) here: {sorted(y.unique().tolist(), key=str)}")
    return f" ({'; '.join(notes)})" if notes else ""


def model_params(candidate: Candidate) -> dict:
    """The candidate's settings in full: models[].params (a torch model's own settings) overridden
    by its grid point."""
    model = candidate.model
    if isinstance(model, TorchModel):
        base = model.model_dump(exclude={"name", "framework", "search"})
    else:
        base = dict(model.params)
    return {**base, **candidate.params}


def _cross_validate(
    candidate: Candidate, template: Pipeline, x: pd.DataFrame, y: pd.Series, y_values: np.ndarray, folds: list,
    task: str, metric: str, classes: list | None, max_latency_ms: float | None, max_size_mb: float | None,
    log: Callable[[str], None] | None,
) -> CandidateResult:
    """One candidate's fold scores, fit time, latency and size, and every limit it breaks;
    a ModelError when it fails to fit or score on this data."""
    scores, fit_seconds, fold_model, val_frame = [], 0.0, None, None
    for fold, (train_idx, val_idx) in enumerate(folds):
        fold_model = clone(template)
        start = time.perf_counter()
        val_frame = x.iloc[val_idx]
        with deterministic_failures(candidate, x, y, task):
            _fit(fold_model, x.iloc[train_idx], y.iloc[train_idx], log)
            fit_seconds += time.perf_counter() - start
            predictions, proba = predict(fold_model, val_frame, task)
        scores.append(compute_metric(metric, y_values[val_idx], predictions, proba, classes))
        if log:
            log(f"cv {candidate.label} fold {fold + 1}/{len(folds)}: {metric}={scores[-1]:.4f}")
    with deterministic_failures(candidate, x, y, task):
        latency = measure_latency_ms_per_row(fold_model, val_frame, task)
    size_mb = serialized_size_bytes(fold_model) / 1e6
    reasons = []
    if max_latency_ms is not None and latency > max_latency_ms:
        reasons.append(f"latency {latency:.3f} ms/row > max_latency_ms {max_latency_ms}")
    if max_size_mb is not None and size_mb > max_size_mb:
        reasons.append(f"size {size_mb:.2f} MB > max_size_mb {max_size_mb}")
    return CandidateResult(
        candidate.label, candidate.model.name, candidate.model.framework, candidate.params,
        scores, fit_seconds / len(folds), latency, size_mb, tuple(reasons), model_params=model_params(candidate),
    )


def select_model(
    features: FeatureSet,
    candidates: list[Candidate],
    *,
    metric: str,
    cv_folds: int,
    max_latency_ms: float | None = None,
    max_size_mb: float | None = None,
    seed: int = 0,
    sample_rows: int | None = None,
    log: Callable[[str], None] | None = None,
) -> SelectionResult:
    """Cross-validate every candidate on the training rows (or a sample of sample_rows of
    them), drop those over the limits, and refit the best on every training row."""
    all_x, all_y = features.xy("train")
    sample = cv_sample(all_y, features.task, sample_rows, seed)
    x, y = all_x.iloc[sample].reset_index(drop=True), all_y.iloc[sample].reset_index(drop=True)
    y_values = y.to_numpy()
    classes = sorted(np.unique(all_y.to_numpy()).tolist()) if features.task == "classification" else None
    folds = list(_folds(features, y, cv_folds))
    results: list[CandidateResult] = []
    failures: list[ModelError] = []
    for candidate in candidates:
        template = build_model(candidate, features.columns, features.task, seed)
        try:
            results.append(_cross_validate(candidate, template, x, y, y_values, folds, features.task, metric,
                                           classes, max_latency_ms, max_size_mb, log))
        except ModelError as exc:  # deterministic: this candidate cannot learn from this data
            failures.append(exc)
            if log:
                log(f"cv {candidate.label}: dropped, failed to fit: {exc}")
            results.append(CandidateResult(
                candidate.label, candidate.model.name, candidate.model.framework, candidate.params, [],
                float("nan"), float("nan"), float("nan"), (f"failed to fit: {exc}",), str(exc),
                model_params(candidate),
            ))
    eligible = [(r, c) for r, c in zip(results, candidates) if not r.drop_reasons]
    if not eligible:
        if failures and len(failures) == len(results):
            raise _carrying(failures[0], results)
        reasons = "; ".join(f"{r.label}: {r.dropped}" for r in results)
        raise _carrying(SelectionError(f"every candidate was dropped: {reasons}"), results)
    sign = 1 if METRIC_DIRECTIONS[metric] else -1
    best, best_candidate = max(eligible, key=lambda pair: sign * pair[0].mean)
    model = build_model(best_candidate, features.columns, features.task, seed)
    start = time.perf_counter()
    try:
        with deterministic_failures(best_candidate, all_x, all_y, features.task):
            _fit(model, all_x, all_y, log)
    except ModelError as exc:
        _carrying(exc, results)
        raise
    return SelectionResult(metric, cv_folds, results, best, model, time.perf_counter() - start,
                           cv_rows=len(sample), train_rows=len(all_y))


def select_for_spec(
    spec: PipelineSpec, features: FeatureSet, log: Callable[[str], None] | None = None
) -> SelectionResult:
    """select_model with the spec's candidates (grids expanded), metric, folds, limits and seed."""
    return select_model(
        features,
        expand_candidates(list(spec.models)),
        metric=spec.selection_metric,
        cv_folds=spec.selection.cv_folds,
        max_latency_ms=spec.selection.max_latency_ms,
        max_size_mb=spec.selection.max_size_mb,
        seed=spec.features.split.seed,
        sample_rows=spec.selection.sample_rows,
        log=log,
    )
