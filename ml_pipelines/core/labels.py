"""Ground truth that arrives after the prediction: read it (files, a SQL table, or the
service's /feedback log), join it to production rows by id, and keep the labelled
batches that retraining learns from.

Join rules, each with a visible count rather than a silent choice:
- a production row with no label yet is not used (`missing`); a later label
  arrives with a later materialization;
- an id repeated in the production batch is one application landed twice: the last
  row is kept (`duplicate_ids`);
- the same label repeated for an id counts once; different labels for one id are
  ambiguous ground truth: that id is left out (`conflicting_ids`);
- labels whose id matches no production row are ignored (`unmatched_labels`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from ml_pipelines.core.errors import SourceError
from ml_pipelines.core.sources import load_source, read_file, resolve_paths
from ml_pipelines.core.storage import ObjectNotFound, ObjectStore
from ml_pipelines.spec import FeedbackLabels, FileLabels, SqlLabels, SqlSource

LABELLED_AT = "labelled_at"  # optional column in label files: when the label became known
BATCH_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$"


@dataclass(frozen=True)
class LabelJoin:
    """Production rows of one batch that have a label, with the target filled in."""

    frame: pd.DataFrame
    rows: int
    labelled: int
    missing: int
    duplicate_ids: int
    conflicting_ids: tuple[str, ...]
    unmatched_labels: int
    label_delay_hours: float | None  # median time from the production row to its label

    def summary(self) -> dict[str, object]:
        return {
            "rows": self.rows,
            "labelled": self.labelled,
            "missing": self.missing,
            "duplicate_ids": self.duplicate_ids,
            "conflicting_ids": list(self.conflicting_ids[:20]),
            "unmatched_labels": self.unmatched_labels,
            "label_delay_hours": self.label_delay_hours,
        }


def check_label_frame(labels: pd.DataFrame, id_columns: Sequence[str], target: str, where: str) -> None:
    missing = [c for c in (*id_columns, target) if c not in labels.columns]
    if missing:
        raise SourceError(
            f"{where}: label data lacks column(s) {', '.join(missing)}; "
            f"it needs the id ({', '.join(id_columns)}) and the target ({target})"
        )


def _key(frame: pd.DataFrame, id_columns: Sequence[str]) -> pd.Series:
    """One string key per row from the id column(s)."""
    parts = [frame[c].astype("str") for c in id_columns]
    key = parts[0]
    for part in parts[1:]:
        key = key + "#" + part
    return key


def join_labels(
    production: pd.DataFrame,
    labels: pd.DataFrame,
    *,
    id_columns: Sequence[str],
    target: str,
    produced_at: pd.Series | datetime | None = None,
) -> LabelJoin:
    """Label the production rows by id. `produced_at` (per row, or one time for the batch)
    and the labels' `labelled_at` column, when both exist, give the label delay."""
    check_label_frame(labels, id_columns, target, "labels")
    missing_ids = [c for c in id_columns if c not in production.columns]
    if missing_ids:
        raise SourceError(f"production data lacks the id column(s) {', '.join(missing_ids)}")
    prod = production.assign(_key=_key(production, id_columns))
    duplicate_ids = int(prod["_key"].duplicated().sum())
    prod = prod.drop_duplicates("_key", keep="last")
    labelled = labels.dropna(subset=[target]).assign(_key=_key(labels, id_columns))
    distinct = labelled.drop_duplicates(["_key", target])
    conflicts = distinct["_key"][distinct["_key"].duplicated(keep=False)].unique()
    usable = distinct[~distinct["_key"].isin(conflicts)]
    keep = ["_key", target] + ([LABELLED_AT] if LABELLED_AT in usable.columns else [])
    joined = prod.drop(columns=[target], errors="ignore").merge(usable[keep], on="_key", how="left")
    has_label = joined[target].notna()
    delay = _median_delay_hours(joined[has_label], produced_at)
    frame = joined[has_label].drop(columns=["_key", *([LABELLED_AT] if LABELLED_AT in joined.columns else [])])
    return LabelJoin(
        frame=frame.reset_index(drop=True),
        rows=len(prod),
        labelled=int(has_label.sum()),
        missing=int((~has_label).sum()),
        duplicate_ids=duplicate_ids,
        conflicting_ids=tuple(str(c) for c in sorted(conflicts)),
        unmatched_labels=int((~usable["_key"].isin(prod["_key"])).sum()),
        label_delay_hours=delay,
    )


def _median_delay_hours(labelled: pd.DataFrame, produced_at) -> float | None:
    if produced_at is None or LABELLED_AT not in labelled.columns or labelled.empty:
        return None
    label_times = pd.to_datetime(labelled[LABELLED_AT], utc=True, errors="coerce")
    if isinstance(produced_at, pd.Series):
        start = pd.to_datetime(produced_at.loc[labelled.index], utc=True, errors="coerce")
    else:
        start = pd.Timestamp(produced_at).tz_convert("UTC") if pd.Timestamp(produced_at).tzinfo else (
            pd.Timestamp(produced_at).tz_localize("UTC")
        )
    hours = ((label_times - start).dt.total_seconds() / 3600).dropna()
    return float(np.median(hours)) if len(hours) else None


# ---------------------------------------------------------------- labelled batches


@dataclass(frozen=True)
class LabelledBatch:
    """What the store keeps about one labelled production batch."""

    batch: str
    rows: int  # labelled rows stored
    landed_at: str  # ISO time the production batch arrived: the order retraining windows use
    updated_at: str
    join: dict[str, object] = field(default_factory=dict)


class LabelledBatches:
    """Labelled production batches of one pipeline in an object store (the registry's):
    `<pipeline>/labelled/<batch>.parquet` plus `<batch>.json`, rewritten when more labels arrive."""

    def __init__(self, store: ObjectStore, pipeline: str):
        self.store = store
        self.pipeline = pipeline

    def _key(self, batch: str, suffix: str) -> str:
        import re

        if not re.match(BATCH_NAME, batch) or ".." in batch:
            raise SourceError(f"batch name {batch!r} is not a plain file or partition name")
        return f"{self.pipeline}/labelled/{batch}.{suffix}"

    def put(self, batch: str, frame: pd.DataFrame, *, landed_at: str, updated_at: str, join: dict) -> LabelledBatch:
        import io

        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        meta = LabelledBatch(batch, len(frame), landed_at, updated_at, join)
        self.store.put(self._key(batch, "parquet"), buffer.getvalue())  # data first, index entry last
        self.store.put(self._key(batch, "json"), json.dumps(asdict(meta), default=str).encode())
        return meta

    def list(self) -> list[LabelledBatch]:
        """Every stored batch with labelled rows, oldest landing first."""
        metas = []
        for key in self.store.list(f"{self.pipeline}/labelled/"):
            if key.endswith(".json"):
                metas.append(LabelledBatch(**json.loads(self.store.get(key))))
        return sorted((m for m in metas if m.rows > 0), key=lambda m: (m.landed_at, m.batch))

    def meta(self, batch: str) -> LabelledBatch:
        try:
            return LabelledBatch(**json.loads(self.store.get(self._key(batch, "json"))))
        except ObjectNotFound as exc:
            raise SourceError(f"{self.pipeline}: labelled batch {batch!r} is not stored") from exc

    def newest(self, count: int) -> list[LabelledBatch]:
        return self.list()[-count:] if count > 0 else []

    def load(self, batch: str) -> pd.DataFrame:
        import io

        try:
            return pd.read_parquet(io.BytesIO(self.store.get(self._key(batch, "parquet"))))
        except ObjectNotFound as exc:
            raise SourceError(f"{self.pipeline}: labelled batch {batch!r} is not stored") from exc


# ---------------------------------------------------------------- reading ground truth


def read_labels(
    source: FileLabels | SqlLabels | FeedbackLabels,
    *,
    target: str,
    label_ids: Sequence[str],
    production_ids: Sequence[str],
    feedback_root: Path,
    pipeline: str,
    base_dir: Path | None,
    variables: Mapping[str, str],
) -> pd.DataFrame:
    """Every label known now: the production id column(s), the target, and `labelled_at`
    (from the data, else the label file's modification time, else the feedback's receipt)."""
    if isinstance(source, FeedbackLabels):
        return read_feedback(feedback_root, pipeline, target)
    if isinstance(source, SqlLabels):
        sql = SqlSource(kind="sql", query=source.query, connection=source.connection)
        frame = load_source(sql, env=variables).frame
        where = "labels query"
    else:
        files = resolve_paths(source.path, base_dir, variables)
        frames = []
        for path in files:
            frame = read_file(source.kind, path, source.read_options)
            if LABELLED_AT not in frame.columns and "://" not in path:
                frame[LABELLED_AT] = datetime.fromtimestamp(Path(path).stat().st_mtime, UTC).isoformat()
            frames.append(frame)
        if not frames:
            return pd.DataFrame(columns=[*production_ids, target, LABELLED_AT])
        frame = pd.concat(frames, ignore_index=True)
        where = f"label files {source.path}"
    check_label_frame(frame, label_ids, target, where)
    return frame.rename(columns=dict(zip(label_ids, production_ids)))


def feedback_dir(root: Path, pipeline: str) -> Path:
    return root / pipeline


def read_feedback(root: Path, pipeline: str, target: str) -> pd.DataFrame:
    """What clients sent to /feedback: request_id, index, the label (as the target) and labelled_at."""
    rows = []
    directory = feedback_dir(root, pipeline)
    for path in sorted(directory.glob("*/*.jsonl")) if directory.is_dir() else []:
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if line.endswith("\n") and line.strip():  # a torn last line was never acknowledged
                    record = json.loads(line)
                    rows.append({"request_id": record["request_id"], "index": record.get("index", 0),
                                 target: record["label"], LABELLED_AT: record["timestamp"]})
    return pd.DataFrame(rows, columns=["request_id", "index", target, LABELLED_AT])
