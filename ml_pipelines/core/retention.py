"""Retention: `ml-pipelines registry gc <pipeline> [--dry-run]` removes the snapshots and artifacts of
versions the spec's `registry.retention` does not keep; every record stays.

Kept: the `keep_versions` newest versions, the champion and the challenger, and every version an alias
ever pointed at (the alias history). A collected version gets `versions/<version>/collected.json` (when,
why, what was removed) before anything of it is removed, so loading or rebuilding it says so instead of
failing on a missing file. Its training data goes too unless a kept version shares it (data is stored
once per data hash, core.snapshots), and unless a run used it within `grace` (a run in progress may
be about to commit a version on it); data that no version names (a run whose candidate failed the
gate) follows the same rule.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ml_pipelines.core.identifiers import check_pipeline_name
from ml_pipelines.core.records import VersionRecord
from ml_pipelines.core.registry import COLLECTED_KEY, ModelRegistry
from ml_pipelines.core.snapshots import DATA_FILE, SNAPSHOT_DIR, data_note, delete_data, note_key
from ml_pipelines.core.storage import ObjectNotFound

DEFAULT_GRACE = timedelta(hours=24)


@dataclass
class GcPlan:
    pipeline: str
    keep_versions: int
    kept: dict[str, str] = field(default_factory=dict)  # version -> why it is kept
    collect: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # version -> (key, bytes) removed
    data: list[tuple[str, int]] = field(default_factory=list)  # training data removed (bytes with its note)
    data_kept: dict[str, str] = field(default_factory=dict)  # data key -> why it stays
    already_collected: list[str] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(size for files in self.collect.values() for _, size in files) + sum(size for _, size in self.data)

    def to_dict(self) -> dict[str, Any]:
        return {"pipeline": self.pipeline, "keep_versions": self.keep_versions, "kept": self.kept,
                "collected": {v: [k for k, _ in files] for v, files in self.collect.items()},
                "data_removed": [k for k, _ in self.data], "data_kept": self.data_kept,
                "already_collected": self.already_collected, "bytes": self.bytes}


def kept_versions(registry: ModelRegistry, pipeline: str, records: list[VersionRecord],
                  keep_versions: int) -> dict[str, str]:
    """version -> why it is kept: newest, an alias now, or an alias once."""
    kept = {r.version: f"one of the {keep_versions} newest" for r in records[-keep_versions:]}
    for move in registry.alias_history(pipeline):
        for version in (move.version, move.previous):
            if version is not None and version not in kept:
                kept[version] = f"{move.alias} at some time (alias history)"
    for alias, version in registry.aliases(pipeline).items():
        kept[version] = f"the {alias} now"
    return kept


def _sized(registry: ModelRegistry, keys: list[str]) -> list[tuple[str, int]]:
    sized = []
    for key in keys:
        try:
            sized.append((key, registry.store.size(key)))
        except ObjectNotFound:
            continue  # removed meanwhile
    return sized


def plan_gc(registry: ModelRegistry, pipeline: str, keep_versions: int, *, now: datetime | None = None,
            grace: timedelta = DEFAULT_GRACE) -> GcPlan:
    """What gc would remove, and why everything else stays; nothing is changed."""
    check_pipeline_name(pipeline)
    records = registry.list_versions(pipeline)  # oldest first
    plan = GcPlan(pipeline, keep_versions, kept=kept_versions(registry, pipeline, records, keep_versions))
    kept_data: dict[str, str] = {}
    for record in records:
        data = record.snapshot.files.get(DATA_FILE) if record.snapshot is not None else None
        if record.version in plan.kept:
            if data is not None:
                kept_data.setdefault(data.key, f"used by kept version {record.version}")
            continue
        if registry.collected(pipeline, record.version) is not None:
            plan.already_collected.append(record.version)
            continue
        prefix = registry.version_prefix(pipeline, record.version)
        keys = registry.store.list(f"{prefix}/artifacts/") + registry.store.list(f"{prefix}/{SNAPSHOT_DIR}/")
        plan.collect[record.version] = _sized(registry, keys)
    plan.data, plan.data_kept = _data_to_remove(registry, pipeline, kept_data, now or datetime.now(UTC), grace)
    return plan


def _data_to_remove(registry: ModelRegistry, pipeline: str, kept: dict[str, str], now: datetime,
                    grace: timedelta) -> tuple[list[tuple[str, int]], dict[str, str]]:
    removed, kept_now = [], dict(kept)
    for key in registry.store.list(f"{pipeline}/data/"):
        if not key.endswith(".parquet") or key in kept:
            continue
        note = data_note(registry.store, key) or {}
        last_used = note.get("last_used_at")
        if last_used is not None and now - datetime.fromisoformat(last_used) < grace:
            kept_now[key] = f"used by a run at {last_used}, within the last {grace}"
            continue
        sized = _sized(registry, [key, note_key(key)])  # the data and its note
        removed.append((key, sum(size for _, size in sized)))
    return removed, kept_now


def run_gc(registry: ModelRegistry, plan: GcPlan, *, now: datetime | None = None) -> int:
    """Carry out the plan; the bytes freed. Each version is marked collected before its files go."""
    stamp = (now or datetime.now(UTC)).isoformat()
    reason = f"registry.retention keep_versions={plan.keep_versions}"
    for version, files in plan.collect.items():
        note = {"collected_at": stamp, "reason": reason, "removed": [k for k, _ in files],
                "bytes": sum(size for _, size in files)}
        registry.store.put(f"{registry.version_prefix(plan.pipeline, version)}/{COLLECTED_KEY}",
                           json.dumps(note, indent=2).encode())
        for key, _ in files:
            registry.store.delete(key)
    for key, _ in plan.data:
        delete_data(registry.store, key)
    return plan.bytes
