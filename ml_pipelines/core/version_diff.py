"""What changed between two versions of a pipeline: `ml-pipelines diff <pipeline> <v1> <v2>`.

From their snapshots (core.snapshots, every file's sha256 checked): the training rows added and
removed, by content (a hash of each row over the columns both have, counted with multiplicity, so a
changed row shows as one removed and one added); the columns added, removed or retyped, and the
validation rules that changed; each shared column's distribution shift, by the drift statistics
monitoring uses (core.drift, v1 as the reference); the spec as a unified YAML diff; the environment.
From their records: the selected model and its parameters, and every metric with its bootstrap interval.
A version whose snapshot is gone (collected by `registry gc`, or registered before snapshots) is still
compared by its record, with a note saying what could not be compared.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ml_pipelines.core.drift import build_profile, compute_drift
from ml_pipelines.core.errors import SnapshotError
from ml_pipelines.core.records import VersionRecord, jsonable
from ml_pipelines.core.registry import ModelRegistry
from ml_pipelines.core.snapshots import LoadedSnapshot, environment_changes, environment_lines, load_snapshot

SAMPLE_ROWS = 10  # added and removed rows shown, each


@dataclass
class VersionDiff:
    pipeline: str
    old: str
    new: str
    rows: dict[str, Any] | None = None
    schema: dict[str, Any] = field(default_factory=dict)
    distribution: list[dict[str, Any]] = field(default_factory=list)
    spec: list[str] = field(default_factory=list)  # unified diff lines; empty when the specs are equal
    model: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    environment: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return jsonable(asdict(self))


def row_hashes(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """One content hash per row over columns (in that order); the index is ignored."""
    return pd.util.hash_pandas_object(frame[columns], index=False).to_numpy()


def row_changes(old: pd.DataFrame, new: pd.DataFrame) -> dict[str, Any]:
    """Rows added and removed by content, over the columns both frames have, with multiplicity."""
    columns = [c for c in old.columns if c in new.columns]
    old_h, new_h = row_hashes(old, columns), row_hashes(new, columns)
    counts = pd.Series(new_h).value_counts().sub(pd.Series(old_h).value_counts(), fill_value=0)
    added, removed = counts[counts > 0], -counts[counts < 0]
    return {
        "compared_on": columns,
        "old_rows": len(old), "new_rows": len(new),
        "added": int(added.sum()), "removed": int(removed.sum()),
        "added_rows": _sample(new, new_h, added), "removed_rows": _sample(old, old_h, removed),
    }


def _sample(frame: pd.DataFrame, hashes: np.ndarray, wanted: pd.Series) -> list[dict[str, Any]]:
    """Up to SAMPLE_ROWS rows whose hash is in wanted (as many of each as wanted counts), with their position."""
    left = wanted.astype(int).to_dict()
    rows = []
    for position in np.flatnonzero(np.isin(hashes, wanted.index.to_numpy())):
        if left.get(hashes[position], 0) <= 0:
            continue
        left[hashes[position]] -= 1
        values = {k: (None if _missing(v) else v) for k, v in frame.iloc[position].to_dict().items()}
        rows.append({"position": int(position), **values})
        if len(rows) == SAMPLE_ROWS:
            break
    return rows


def _missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def schema_changes(old: LoadedSnapshot | None, new: LoadedSnapshot | None, a: VersionRecord,
                   b: VersionRecord) -> dict[str, Any]:
    """Columns added, removed and retyped (from the data), and validation rules that changed (from the records)."""
    changes: dict[str, Any] = {}
    if old is not None and new is not None:
        before, after = old.frame.dtypes.astype(str).to_dict(), new.frame.dtypes.astype(str).to_dict()
        changes["added_columns"] = {c: t for c, t in after.items() if c not in before}
        changes["removed_columns"] = {c: t for c, t in before.items() if c not in after}
        changes["changed_types"] = {c: [before[c], after[c]] for c in before if c in after and before[c] != after[c]}
    rules_a = {r["column"]: r for r in (a.schema.to_dict()["rules"] if a.schema else [])}
    rules_b = {r["column"]: r for r in (b.schema.to_dict()["rules"] if b.schema else [])}
    changes["rules"] = {
        column: {k: [rules_a.get(column, {}).get(k), rules_b.get(column, {}).get(k)]
                 for k in sorted(set(rules_a.get(column, {})) | set(rules_b.get(column, {})))
                 if rules_a.get(column, {}).get(k) != rules_b.get(column, {}).get(k) and k != "column"}
        for column in sorted(set(rules_a) | set(rules_b))
        if rules_a.get(column) != rules_b.get(column)
    }
    return changes


def distribution_shift(old: pd.DataFrame, new: pd.DataFrame) -> list[dict[str, Any]]:
    """Each shared column's drift from old (the reference) to new, by core.drift's statistics."""
    shared = [c for c in old.columns if c in new.columns]
    numeric = [c for c in shared if pd.api.types.is_numeric_dtype(old[c]) and not pd.api.types.is_bool_dtype(old[c])
               and pd.api.types.is_numeric_dtype(new[c])]
    categorical = [c for c in shared if c not in numeric and not pd.api.types.is_datetime64_any_dtype(old[c])]
    report = compute_drift(build_profile(old, numeric, categorical), new[numeric + categorical])
    return [
        {"column": f.column, "kind": f.kind, "method": f.method, "value": f.value, "threshold": f.threshold,
         "drifted": f.drifted, "statistics": f.statistics, "new_categories": f.new_categories}
        for f in report.features
    ]


def model_changes(a: VersionRecord, b: VersionRecord) -> dict[str, Any]:
    keys = sorted(set(a.params) | set(b.params))
    return {
        "model": [a.model_name, b.model_name], "framework": [a.framework, b.framework],
        "params": {k: [a.params.get(k), b.params.get(k)] for k in keys if a.params.get(k) != b.params.get(k)},
    }


def metric_changes(a: VersionRecord, b: VersionRecord) -> dict[str, dict[str, Any]]:
    intervals_a, intervals_b = a.extra.get("intervals") or {}, b.extra.get("intervals") or {}
    out = {}
    for name in sorted(set(a.metrics) | set(b.metrics)):
        old, new = a.metrics.get(name), b.metrics.get(name)
        out[name] = {"old": old, "new": new, "delta": new - old if old is not None and new is not None else None,
                     "old_interval": intervals_a.get(name), "new_interval": intervals_b.get(name)}
    return out


def _loaded(registry: ModelRegistry, record: VersionRecord, notes: list[str]) -> LoadedSnapshot | None:
    """The version's snapshot, checksums verified; None (with a note) when it has none any more.
    A checksum mismatch is raised, never passed over."""
    try:
        return load_snapshot(registry, record)
    except SnapshotError as exc:
        notes.append(f"{record.version}: {exc}")
        return None


def diff_versions(registry: ModelRegistry, pipeline: str, v1: str, v2: str) -> VersionDiff:
    a, b = registry.get_version(pipeline, v1), registry.get_version(pipeline, v2)
    result = VersionDiff(pipeline, v1, v2, model=model_changes(a, b), metrics=metric_changes(a, b))
    old, new = _loaded(registry, a, result.notes), _loaded(registry, b, result.notes)
    result.schema = schema_changes(old, new, a, b)
    if old is None or new is None:
        result.notes.append("rows, distributions, spec and environment need both snapshots: not compared")
        return result
    result.rows = row_changes(old.frame, new.frame)
    result.distribution = distribution_shift(old.frame, new.frame)
    result.spec = list(difflib.unified_diff(old.spec_text.splitlines(), new.spec_text.splitlines(),
                                            f"{v1}/spec.yaml", f"{v2}/spec.yaml", lineterm=""))
    result.environment = environment_changes(old.environment, new.environment)
    return result


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def diff_lines(diff: VersionDiff) -> list[str]:
    """The diff as text, one section each."""
    lines = [f"diff {diff.pipeline} {diff.old} -> {diff.new}"]
    if diff.rows is not None:
        r = diff.rows
        lines.append(f"rows: {r['old_rows']} -> {r['new_rows']}: {r['added']} added, {r['removed']} removed "
                     f"(by content over {len(r['compared_on'])} shared columns)")
        lines += [f"  + row {row['position']}: {_row_text(row)}" for row in r["added_rows"]]
        lines += [f"  - row {row['position']}: {_row_text(row)}" for row in r["removed_rows"]]
    lines += ["schema:", *_schema_lines(diff.schema)]
    if diff.distribution:
        lines.append("distribution shift (v1 as the reference):")
        lines += [f"  {d['column']:<24} {d['kind']:<12} {d['method']:<14} {_fmt(d['value']):>8}  "
                  f"{'SHIFTED' if d['drifted'] else 'ok'}" for d in diff.distribution]
    lines += ["spec:", *([f"  {line}" for line in diff.spec] or ["  unchanged"])]
    m = diff.model
    lines.append(f"model: {m['model'][0]} ({m['framework'][0]}) -> {m['model'][1]} ({m['framework'][1]})")
    lines += [f"  param {k}: {_fmt(v[0])} -> {_fmt(v[1])}" for k, v in m["params"].items()]
    lines.append("metrics (95% bootstrap intervals):")
    for name, v in diff.metrics.items():
        lines.append(f"  {name:<10} {_fmt(v['old'])} {_interval(v['old_interval'])} -> {_fmt(v['new'])} "
                     f"{_interval(v['new_interval'])}  delta {_fmt(v['delta'])}")
    if diff.environment is not None:
        lines += ["environment:", *[f"  {line}" for line in environment_lines(diff.environment)]]
    lines += [f"note: {note}" for note in diff.notes]
    return lines


def _row_text(row: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_fmt(v)}" for k, v in row.items() if k != "position")


def _interval(bounds: list[float] | None) -> str:
    return f"[{bounds[0]:.4f}, {bounds[1]:.4f}]" if bounds else "[-]"


def _schema_lines(schema: dict[str, Any]) -> list[str]:
    lines = [f"  + column {c} ({t})" for c, t in schema.get("added_columns", {}).items()]
    lines += [f"  - column {c} ({t})" for c, t in schema.get("removed_columns", {}).items()]
    lines += [f"  ~ column {c}: {a} -> {b}" for c, (a, b) in schema.get("changed_types", {}).items()]
    for column, fields in schema.get("rules", {}).items():
        lines += [f"  ~ rule {column}.{k}: {a} -> {b}" for k, (a, b) in fields.items()]
    return lines or ["  unchanged"]
