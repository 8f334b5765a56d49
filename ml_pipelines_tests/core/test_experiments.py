"""The experiment history (core.experiments) over an object store: one append-only record
per training run, keyed by the run id, with every candidate and every reason it was not
the winner. Every store test runs against each store of the registry suite
(core/conftest.py's `store` fixture: local files, and S3 on moto's real server)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import pytest

from ml_pipelines.core.errors import RegistryError
from ml_pipelines.core.experiments import (
    ExperimentLog,
    ExperimentRecord,
    check_run_id,
    experiment_record,
)
from ml_pipelines.core.selection import CandidateResult, SelectionResult


PIPELINE = "credit"
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def _result(label: str, scores: list[float], reasons: tuple[str, ...] = (), error: str | None = None,
            latency: float = 0.01, size: float = 0.004) -> CandidateResult:
    if error is not None:
        return CandidateResult(label, label, "sklearn", {}, [], math.nan, math.nan, math.nan, reasons, error)
    return CandidateResult(label, label.split("(")[0], "sklearn", {"C": 1.0} if "(" in label else {}, scores,
                           0.12, latency, size, reasons)


def _selection(*results: CandidateResult, best: int = 0) -> SelectionResult:
    return SelectionResult("roc_auc", 2, list(results), results[best], model=None, refit_seconds=0.3,
                           cv_rows=640, train_rows=640)


def _record(run_id: str, at: datetime = T0, **kwargs) -> ExperimentRecord:
    selection = _selection(
        _result("logreg(C=1.0)", [0.74, 0.76]),
        _result("dummy", [0.5, 0.5]),
        _result("slow", [0.75, 0.75], reasons=("latency 1.030 ms/row > max_latency_ms 0.5",
                                               "size 0.90 MB > max_size_mb 0.5"), latency=1.03, size=0.9),
        _result("nb", [], reasons=("failed to fit: models.nb: candidate nb failed on this data: Negative values",),
                error="models.nb: candidate nb failed on this data: Negative values"),
    )
    return experiment_record(PIPELINE, run_id, metric="roc_auc", cv_folds=2, results=selection.results,
                             selection=selection, limits={"max_latency_ms": 0.5, "max_size_mb": 0.5},
                             data_version="d" * 16, spec_hash="abc", code_version="0.1.0-abc", now=at, **kwargs)


def test_a_record_says_how_every_candidate_ended_with_every_reason():
    record = _record("run-1")
    by_label = {c.label: c for c in record.candidates}
    assert record.outcome == "selected" and record.winner == "logreg(C=1.0)" and record.error is None
    winner = by_label["logreg(C=1.0)"]
    assert (winner.status, winner.reasons, winner.params) == ("winner", [], {"C": 1.0})
    assert winner.cv_mean == pytest.approx(0.75) and winner.cv_std == pytest.approx(0.01)
    assert winner.fold_scores == [0.74, 0.76]
    assert (winner.fit_seconds, winner.latency_ms_per_row, winner.size_mb) == (0.12, 0.01, 0.004)
    assert by_label["dummy"].status == "lost"
    assert by_label["dummy"].reasons == ["lost on cross-validated roc_auc: 0.5000 against logreg(C=1.0)'s 0.7500"]
    # both limits broken: both reasons, not only the first
    assert by_label["slow"].status == "dropped"
    assert by_label["slow"].reasons == ["latency 1.030 ms/row > max_latency_ms 0.5", "size 0.90 MB > max_size_mb 0.5"]
    failed = by_label["nb"]
    assert failed.status == "dropped" and failed.error.endswith("Negative values")
    assert failed.reasons == [f"failed to fit: {failed.error}"]
    assert (failed.cv_mean, failed.cv_std, failed.fit_seconds, failed.latency_ms_per_row) == (None,) * 4
    assert (record.count("winner"), record.count("lost"), record.count("dropped"), record.failed_candidates) == (
        1, 1, 2, 1)
    # plain JSON (no NaN), and back
    text = record.to_json().decode()
    assert "NaN" not in text
    assert ExperimentRecord.from_json(record.to_json()) == record


def test_a_run_that_selected_nothing_is_a_failed_record_with_the_error():
    results = [_result("slow", [0.75, 0.75], reasons=("latency 1.030 ms/row > max_latency_ms 0.5",)),
               _result("nb", [], reasons=("failed to fit: boom",), error="boom")]
    record = experiment_record(PIPELINE, "run-9", metric="rmse", cv_folds=3, results=results,
                               error="SelectionError: every candidate was dropped", now=T0)
    assert (record.outcome, record.winner, record.best) == ("failed", None, None)
    assert record.error == "SelectionError: every candidate was dropped"
    assert [c.status for c in record.candidates] == ["dropped", "dropped"]
    assert record.higher_is_better is False


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "run id", "x" * 200, None])
def test_run_ids_are_checked_before_any_key_is_built(bad):
    with pytest.raises(RegistryError, match="run id"):
        check_run_id(bad)


# ------------------------------------------------------------------ the store


def test_one_record_per_run_and_a_retry_writes_nothing(store):  # noqa: F811
    log = ExperimentLog(store)
    first = _record("0a1b2c3d-0000-4000-8000-000000000001")
    assert log.append(first) is True
    # a retried step of the same run: a later time, other timings; the first record stands
    retry = _record(first.run_id, at=T0 + timedelta(minutes=2))
    assert log.append(retry) is False
    assert log.records(PIPELINE) == [first]
    assert log.get(PIPELINE, first.run_id) == first
    assert store.list(f"{PIPELINE}/experiments/") == [f"{PIPELINE}/experiments/{first.run_id}.json"]
    assert json.loads(store.get(f"{PIPELINE}/experiments/{first.run_id}.json"))["recorded_at"] == T0.isoformat()


def test_runs_list_oldest_first_and_last_n_keeps_the_newest(store):  # noqa: F811
    log = ExperimentLog(store)
    # written out of order, with run ids that do not sort by time
    runs = {"c-run": T0 + timedelta(hours=1), "a-run": T0 + timedelta(hours=3), "b-run": T0}
    for run_id, at in runs.items():
        assert log.append(_record(run_id, at=at))
    assert [r.run_id for r in log.records(PIPELINE)] == ["b-run", "c-run", "a-run"]
    assert [r.run_id for r in log.records(PIPELINE, last=2)] == ["c-run", "a-run"]
    assert [r.run_id for r in log.records(PIPELINE, last=10)] == ["b-run", "c-run", "a-run"]
    assert log.records("other") == []
    with pytest.raises(RegistryError, match="no experiment record of run 'd-run'"):
        log.get(PIPELINE, "d-run")


def test_experiments_live_beside_the_registry_without_making_a_pipeline_appear(store):  # noqa: F811
    from ml_pipelines.core.registry import ModelRegistry

    ExperimentLog(store).append(_record("run-1"))
    assert ModelRegistry(store).pipelines() == []  # only committed versions make a pipeline
    assert ModelRegistry(store).list_versions(PIPELINE) == []
