"""The experiment history: every candidate of every training run, not only the winner.

Layout inside the registry's ObjectStore (local folder or S3), per pipeline:
    <pipeline>/experiments/<run id>.json    one training run, created only if absent

The trained_model step writes one record per Dagster run, with a conditional create
keyed by the run id (ObjectStore.put_if_absent): a retried step of the same run finds
the record there and writes nothing, so a run has exactly one record. A put is atomic
on local files and on S3, so a record is whole or absent, and records are never
rewritten or deleted (append-only). A run that selects nothing (every candidate
dropped, or the winner's refit failed) is recorded too, with the error.

Each candidate says what it scored (cross-validated mean and std, the fold scores),
what it cost (mean fit seconds per fold, prediction latency per row, serialized size),
and how it ended: `winner`, `lost` (on the cross-validated score, to the winner) or
`dropped`, with every reason: over selection.max_latency_ms, over
selection.max_size_mb, failed to fit (with the error).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from ml_pipelines.core.errors import RegistryError
from ml_pipelines.core.identifiers import check_pipeline_name
from ml_pipelines.core.selection import CandidateResult, SelectionResult
from ml_pipelines.core.storage import ObjectNotFound, ObjectStore
from ml_pipelines.spec import METRIC_DIRECTIONS

EXPERIMENTS_DIR = "experiments"
# Dagster run ids are UUIDs; anything else that makes a safe object name is accepted too
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
WINNER, LOST, DROPPED = "winner", "lost", "dropped"
SELECTED, FAILED = "selected", "failed"


def check_run_id(run_id: object) -> str:
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.match(run_id):
        raise RegistryError(f"run id {run_id!r:.80} is not valid: a run id is letters, digits, - and _")
    return run_id


def _number(value: float | None) -> float | None:
    """A JSON-safe float: NaN (a failed candidate's score) becomes null."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


@dataclass(frozen=True)
class CandidateEntry:
    label: str  # the candidate as the selection table names it, e.g. gbm(learning_rate=0.1)
    model: str  # models[].name
    framework: str
    params: dict[str, Any]  # the grid point (models[].search) that tells the candidates of one model apart
    status: str  # winner | lost | dropped
    reasons: list[str] = field(default_factory=list)  # why it is not the winner (every one)
    cv_mean: float | None = None
    cv_std: float | None = None
    fold_scores: list[float] = field(default_factory=list)
    fit_seconds: float | None = None  # mean per fold
    latency_ms_per_row: float | None = None
    size_mb: float | None = None
    error: str | None = None  # when it failed to fit or score
    # what the estimator was built with: models[].params (a torch model's settings) and the grid point
    model_params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CandidateEntry:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class ExperimentRecord:
    pipeline: str
    run_id: str
    recorded_at: str  # ISO time, UTC
    metric: str
    higher_is_better: bool
    cv_folds: int
    outcome: str  # selected | failed
    candidates: list[CandidateEntry]
    winner: str | None = None  # the winner's label, when the run selected one
    error: str | None = None  # why the run selected nothing
    cv_rows: int = 0
    train_rows: int = 0
    refit_seconds: float | None = None
    limits: dict[str, float | None] = field(default_factory=dict)  # max_latency_ms, max_size_mb
    data_version: str | None = None
    spec_hash: str | None = None
    code_version: str | None = None

    @property
    def best(self) -> CandidateEntry | None:
        return next((c for c in self.candidates if c.status == WINNER), None)

    def count(self, status: str) -> int:
        return sum(c.status == status for c in self.candidates)

    @property
    def failed_candidates(self) -> int:
        return sum(c.error is not None for c in self.candidates)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False).encode()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentRecord:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["candidates"] = [CandidateEntry.from_dict(c) for c in data.get("candidates", [])]
        return cls(**values)

    @classmethod
    def from_json(cls, raw: bytes) -> ExperimentRecord:
        return cls.from_dict(json.loads(raw))


def _plain(params: dict[str, Any]) -> dict[str, Any]:
    """Parameters as JSON holds them (a value JSON has no type for, as its text)."""
    return json.loads(json.dumps(params, default=str))


def _best_of(results: Sequence[CandidateResult], metric: str) -> CandidateResult | None:
    eligible = [r for r in results if not r.drop_reasons]
    if not eligible:
        return None
    sign = 1 if METRIC_DIRECTIONS[metric] else -1
    return max(eligible, key=lambda r: sign * r.mean)


def _entry(result: CandidateResult, best: CandidateResult | None, metric: str) -> CandidateEntry:
    if result is best:
        status, reasons = WINNER, []
    elif result.drop_reasons:
        status, reasons = DROPPED, list(result.drop_reasons)
    else:
        status = LOST
        reasons = [f"lost on cross-validated {metric}: {result.mean:.4f} against {best.label}'s {best.mean:.4f}"
                   if best is not None else "not selected"]
    return CandidateEntry(
        label=result.label, model=result.model_name, framework=result.framework,
        params=_plain(result.params), status=status, reasons=reasons,
        cv_mean=_number(result.mean), cv_std=_number(result.std), fold_scores=[float(s) for s in result.fold_scores],
        fit_seconds=_number(result.fit_seconds), latency_ms_per_row=_number(result.latency_ms_per_row),
        size_mb=_number(result.size_mb), error=result.error,
        model_params=_plain(result.model_params),
    )


def experiment_record(
    pipeline: str,
    run_id: str,
    *,
    metric: str,
    cv_folds: int,
    results: Sequence[CandidateResult],
    selection: SelectionResult | None = None,
    error: str | None = None,
    limits: dict[str, float | None] | None = None,
    data_version: str | None = None,
    spec_hash: str | None = None,
    code_version: str | None = None,
    now: datetime | None = None,
) -> ExperimentRecord:
    """The record of one training run: from its SelectionResult when it selected a winner, else
    from the candidates' results its error carried (selection.candidate_results_of) and the error."""
    if selection is not None:
        best: CandidateResult | None = selection.best
        results = selection.results
    else:
        # the run failed: at most the best eligible candidate, whose refit then failed, was chosen
        best = None
    candidates = [_entry(r, best, metric) for r in results]
    if selection is None:
        chosen = _best_of(results, metric)
        candidates = [
            CandidateEntry(**{**asdict(c), "reasons": [f"its refit on every training row failed: {error}"]})
            if chosen is not None and c.label == chosen.label else c
            for c in candidates
        ]
    return ExperimentRecord(
        pipeline=check_pipeline_name(pipeline),
        run_id=check_run_id(run_id),
        recorded_at=(now or datetime.now(UTC)).isoformat(),
        metric=metric,
        higher_is_better=METRIC_DIRECTIONS[metric],
        cv_folds=cv_folds,
        outcome=SELECTED if selection is not None else FAILED,
        candidates=candidates,
        winner=best.label if best is not None else None,
        error=error,
        cv_rows=selection.cv_rows if selection is not None else 0,
        train_rows=selection.train_rows if selection is not None else 0,
        refit_seconds=_number(selection.refit_seconds) if selection is not None else None,
        limits=dict(limits or {}),
        data_version=data_version,
        spec_hash=spec_hash,
        code_version=code_version,
    )


class ExperimentLog:
    """The append-only experiment history of every pipeline in one object store."""

    def __init__(self, store: ObjectStore):
        self.store = store

    @staticmethod
    def prefix(pipeline: str) -> str:
        return f"{check_pipeline_name(pipeline)}/{EXPERIMENTS_DIR}/"

    def key(self, pipeline: str, run_id: str) -> str:
        return f"{self.prefix(pipeline)}{check_run_id(run_id)}.json"

    def uri(self, pipeline: str, run_id: str) -> str:
        return self.store.uri(self.key(pipeline, run_id))

    def append(self, record: ExperimentRecord) -> bool:
        """Create the run's record; False (and nothing written) when the run already has one."""
        return self.store.put_if_absent(self.key(record.pipeline, record.run_id), record.to_json())

    def get(self, pipeline: str, run_id: str) -> ExperimentRecord:
        try:
            return ExperimentRecord.from_json(self.store.get(self.key(pipeline, run_id)))
        except ObjectNotFound as exc:
            raise RegistryError(f"{pipeline} has no experiment record of run {run_id!r}") from exc

    def records(self, pipeline: str, last: int | None = None) -> list[ExperimentRecord]:
        """Every training run of the pipeline, oldest first; with `last`, only the newest `last` of them."""
        prefix = self.prefix(pipeline)
        keys = [k for k in self.store.list(prefix) if k.endswith(".json") and "/" not in k[len(prefix):]]
        records = sorted((ExperimentRecord.from_json(self.store.get(k)) for k in keys),
                         key=lambda r: (r.recorded_at, r.run_id))
        if last is not None:
            records = records[-last:] if last > 0 else []
        return records
