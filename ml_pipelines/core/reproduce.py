"""Rebuild a registered version from what the registry keeps (core.snapshots) and say whether it
comes out the same: `ml-pipelines reproduce <pipeline> <version>`.

No source is read and nothing is written to the registry: the stored data, spec and split go
through the same core functions the assets call (features, selection, evaluation), in this process,
with a scratch folder for the stored model it compares against. The rebuild matches when:

- the stored spec and data hash to what the record says, and the split is the stored one;
- selection picks the same candidate with the same parameters;
- every recorded metric and bootstrap interval comes out equal: exactly for scikit-learn models,
  within TORCH_TOLERANCE (absolute) for torch ones, whose floating-point sums may be ordered
  differently on other threads or hardware;
- on the stored test rows, the rebuilt model's predictions equal the stored model's (labels
  exactly, probabilities or regression values within the same tolerance).

Every difference between the environment the version was built in and this one is reported too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ml_pipelines.core.evaluation import Evaluation, evaluate_for_spec, holdout_predictions
from ml_pipelines.core.features import FeatureSet, build_feature_set, feature_set_from_split
from ml_pipelines.core.hashing import frame_hash
from ml_pipelines.core.records import VersionRecord, jsonable
from ml_pipelines.core.registry import ModelRegistry
from ml_pipelines.core.selection import SelectionResult, select_for_spec
from ml_pipelines.core.snapshots import (
    LoadedSnapshot,
    environment,
    environment_changes,
    environment_lines,
    load_snapshot,
)
from ml_pipelines.spec import PipelineSpec

TORCH_TOLERANCE = 1e-3  # absolute, on metrics, interval bounds, probabilities and regression values


@dataclass(frozen=True)
class Check:
    what: str  # "spec", "data", "split", "model", "metric roc_auc", "interval roc_auc", "predictions"
    passed: bool
    detail: str


@dataclass
class ReproduceReport:
    pipeline: str
    version: str
    framework: str
    tolerance: float
    data_rows: int
    test_rows: int
    checks: list[Check] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)  # core.snapshots.environment_changes
    notes: list[str] = field(default_factory=list)  # what differs but does not decide the verdict

    @property
    def matches(self) -> bool:
        return all(c.passed for c in self.checks)

    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        return jsonable({**asdict(self), "matches": self.matches})


def within(recorded: float | None, rebuilt: float | None, tolerance: float) -> bool:
    """Equal (tolerance 0), or at most tolerance apart; two NaNs are equal."""
    if recorded is None or rebuilt is None:
        return recorded is rebuilt
    if math.isnan(recorded) or math.isnan(rebuilt):
        return math.isnan(recorded) and math.isnan(rebuilt)
    return recorded == rebuilt if tolerance == 0 else abs(recorded - rebuilt) <= tolerance


def _how(tolerance: float) -> str:
    return "exact" if tolerance == 0 else f"within {tolerance:g}"


def reproduce(
    registry: ModelRegistry, pipeline: str, version: str, *, tolerance: float | None = None,
    log: Callable[[str], None] | None = None,
) -> ReproduceReport:
    """Rebuild the version from its snapshot and compare; raises a SnapshotError (a ChecksumError for a
    file that does not match its record) when it cannot be rebuilt at all."""
    say = log or (lambda _line: None)
    record = registry.get_version(pipeline, version)
    loaded = load_snapshot(registry, record)  # every file's sha256 checked
    spec = loaded.spec()
    tolerance = (TORCH_TOLERANCE if record.framework == "torch" else 0.0) if tolerance is None else tolerance
    report = ReproduceReport(pipeline, version, record.framework, tolerance, len(loaded.frame), len(loaded.split.test))
    report.checks += _inputs_checks(record, loaded, spec)
    features = _stored_features(record, loaded, spec, report)
    say(f"{pipeline} {version}: rebuilding from {len(loaded.frame)} stored rows ({len(loaded.split.test)} test rows)")
    selection = select_for_spec(spec, features, log=log)
    # versions from before blocked resamples record none: theirs were drawn over all rows at once
    evaluation = evaluate_for_spec(spec, selection.model, features, champion=None,
                                   bootstrap_block_rows=record.extra.get("bootstrap_block_rows"))
    report.checks.append(_model_check(record, selection))
    report.checks += _metric_checks(record, evaluation, tolerance)
    say(f"{pipeline} {version}: comparing predictions with the stored model on the test rows")
    stored_model = registry.load_model(pipeline, version, record.trusted_roots)  # checksums verified
    report.checks.append(_prediction_check(stored_model, selection, features, tolerance))
    report.environment = environment_changes(loaded.environment, environment())
    return report


def _inputs_checks(record: VersionRecord, loaded: LoadedSnapshot, spec: PipelineSpec) -> list[Check]:
    spec_hash, data_hash = spec.spec_hash(), frame_hash(loaded.frame)
    return [
        Check("spec", spec_hash == record.spec_hash,
              f"stored spec hashes to {spec_hash}" + ("" if spec_hash == record.spec_hash else
                                                      f", the record says {record.spec_hash} (this code reads "
                                                      "the stored spec differently: changed defaults?)")),
        Check("data", data_hash == record.data_version,
              f"{len(loaded.frame)} stored rows hash to {data_hash}"
              + ("" if data_hash == record.data_version else f", the record says {record.data_version}")),
    ]


def _stored_features(record: VersionRecord, loaded: LoadedSnapshot, spec: PipelineSpec,
                     report: ReproduceReport) -> FeatureSet:
    """The features of the stored split; a note when this code would split the data differently."""
    split_info = record.snapshot.split if record.snapshot is not None else {}
    features = feature_set_from_split(
        spec, loaded.frame, loaded.split, stratified=bool(split_info.get("stratified")),
        holdout=str(split_info.get("holdout", "random")),
    ).with_lineage(data_version=record.data_version, schema=record.schema, partitions=tuple(record.partitions))
    fresh = build_feature_set(spec, loaded.frame).split
    same = fresh is not None and np.array_equal(fresh.train, loaded.split.train) and np.array_equal(
        fresh.test, loaded.split.test)
    report.checks.append(Check("split", True, f"stored split: {len(loaded.split.train)} training rows, "
                                              f"{len(loaded.split.test)} test rows, in their stored order"))
    if not same:
        report.notes.append("this code splits the stored data differently from the stored split (a library's "
                            "split changed?); the rebuild used the stored split")
    return features


def _model_check(record: VersionRecord, selection: SelectionResult) -> Check:
    best = selection.best
    rebuilt_params = jsonable(best.params)
    same = (best.model_name, best.framework, rebuilt_params) == (record.model_name, record.framework, record.params)
    detail = f"{best.model_name} ({best.framework}) params={rebuilt_params}"
    if not same:
        detail = (f"selection picked {detail}; the record says {record.model_name} ({record.framework}) "
                  f"params={record.params}")
        dropped = [f"{r.label}: {r.dropped}" for r in selection.results if r.dropped]
        if dropped:
            detail += f" (dropped now: {'; '.join(dropped)})"
    return Check("model", same, detail)


def _metric_checks(record: VersionRecord, evaluation: Evaluation, tolerance: float) -> list[Check]:
    checks = []
    for name, recorded in sorted(record.metrics.items()):
        rebuilt = evaluation.metrics.get(name)
        ok = within(recorded, rebuilt, tolerance)
        checks.append(Check(f"metric {name}", ok, f"recorded {recorded!r}, rebuilt {rebuilt!r}"
                            + (f" ({_how(tolerance)})" if ok else f": differs by more than {_how(tolerance)}")))
    for name, bounds in sorted((record.extra.get("intervals") or {}).items()):
        interval = evaluation.intervals.get(name)
        rebuilt = [interval.low, interval.high] if interval is not None else None
        ok = rebuilt is not None and all(within(a, b, tolerance) for a, b in zip(bounds, rebuilt))
        checks.append(Check(f"interval {name}", ok, f"recorded {bounds}, rebuilt {rebuilt}"))
    return checks


def _prediction_check(stored_model, selection: SelectionResult, features: FeatureSet, tolerance: float) -> Check:
    """The rebuilt model against the stored one, on the stored test rows."""
    old, new = holdout_predictions(stored_model, features), holdout_predictions(selection.model, features)
    rows = len(old.y_true)
    if features.task == "regression" or tolerance > 0:
        old_values = old.proba if old.proba is not None else np.asarray(old.y_pred, dtype=float)
        new_values = new.proba if new.proba is not None else np.asarray(new.y_pred, dtype=float)
        if old_values.shape != new_values.shape:
            return Check("predictions", False, f"stored model gives {old_values.shape}, rebuilt {new_values.shape}")
        gap = float(np.max(np.abs(old_values - new_values))) if old_values.size else 0.0
        ok = gap == 0 if tolerance == 0 else gap <= tolerance
        return Check("predictions", ok, f"{rows} test rows: largest difference {gap:.3g} ({_how(tolerance)})")
    labels_differ = int(np.sum(np.asarray(old.y_pred) != np.asarray(new.y_pred)))
    same_proba = old.proba is None or (new.proba is not None and np.array_equal(old.proba, new.proba))
    detail = f"{rows} test rows: " + ("identical labels and probabilities" if not labels_differ and same_proba else
                                      f"{labels_differ} labels differ" + ("" if same_proba else
                                                                         ", probabilities differ"))
    return Check("predictions", labels_differ == 0 and same_proba, detail)


def report_lines(report: ReproduceReport) -> list[str]:
    """The report as text: each check, the environment's differences, the verdict last."""
    lines = [(f"reproduce {report.pipeline} {report.version}: rebuilt from {report.data_rows} stored rows, the "
              f"stored spec and split ({report.test_rows} test rows); comparisons {_how(report.tolerance)} "
              f"({report.framework})")]
    lines += [f"  {'ok  ' if c.passed else 'FAIL'} {c.what:<24} {c.detail}" for c in report.checks]
    lines += [f"  note: {note}" for note in report.notes]
    lines.append("environment, then -> now:")
    lines += [f"  {line}" for line in environment_lines(report.environment)]
    if report.matches:
        lines.append(f"result: the rebuild matches ({_how(report.tolerance)})")
    else:
        lines.append("result: the rebuild does NOT match: " + "; ".join(f"{c.what}: {c.detail}"
                                                                       for c in report.failures()))
    return lines
