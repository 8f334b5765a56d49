"""What a retrain learns from: the spec's source plus the newest labelled production
batches (`monitoring.retrain.window`), with every row's origin kept so that the
version record can say exactly which batches it learned from, and the split can hold
out the newest labelled rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from ml_pipelines.core.errors import SourceError
from ml_pipelines.core.labels import LabelledBatches

# Which source a training row came from: SOURCE, or the production batch's name. The
# column travels through validation (no rule ever applies to it) and is dropped from
# the model's inputs; it is part of the data hash.
ORIGIN_COLUMN = "ml_pipelines_origin"
SOURCE = "source"


@dataclass(frozen=True)
class BatchRows:
    batch: str
    rows: int


@dataclass(frozen=True)
class Provenance:
    """How many training rows came from the source and from each production batch."""

    source_rows: int
    batches: tuple[BatchRows, ...] = ()

    @property
    def production_rows(self) -> int:
        return sum(b.rows for b in self.batches)

    def to_dict(self) -> dict[str, object]:
        return {"source_rows": self.source_rows, "batches": [{"batch": b.batch, "rows": b.rows} for b in self.batches]}

    @classmethod
    def from_dict(cls, data: dict) -> Provenance:
        return cls(int(data.get("source_rows", 0)), tuple(BatchRows(b["batch"], int(b["rows"])) for b in data.get("batches", ())))


def provenance_of(frame: pd.DataFrame) -> Provenance:
    """Row counts per origin, batches in the order they appear (oldest first)."""
    if ORIGIN_COLUMN not in frame.columns:
        return Provenance(len(frame))
    counts = frame[ORIGIN_COLUMN].value_counts(sort=False)
    order = list(dict.fromkeys(frame[ORIGIN_COLUMN]))
    batches = tuple(BatchRows(str(b), int(counts[b])) for b in order if b != SOURCE)
    return Provenance(int(counts.get(SOURCE, 0)), batches)


def join_window(
    source: pd.DataFrame, batches: Sequence[tuple[str, pd.DataFrame]], *, id_columns: Sequence[str]
) -> pd.DataFrame:
    """The source rows, then each labelled batch (oldest first), restricted to the source's
    columns. A production row whose id reappears in a newer batch is kept only once, newest."""
    if not batches:
        return source
    columns = list(source.columns)
    parts = [source.assign(**{ORIGIN_COLUMN: SOURCE})]
    seen: set[tuple] = set()
    for name, frame in reversed(batches):  # newest first, so the newest copy of an id wins
        keys = list(map(tuple, frame[list(id_columns)].astype("str").to_numpy())) if id_columns else []
        fresh = [k not in seen for k in keys] if keys else [True] * len(frame)
        seen.update(keys)
        kept = like_source(frame.loc[fresh].reindex(columns=columns), source, name)
        parts.insert(1, kept.assign(**{ORIGIN_COLUMN: name}))
    return pd.concat(parts, ignore_index=True)


def like_source(batch: pd.DataFrame, source: pd.DataFrame, name: str) -> pd.DataFrame:
    """A landed batch read back from text has its dates and numbers as strings: give each
    column the source's kind, or fail naming the batch and the column."""
    converted = {}
    for column in batch.columns:
        kind = source[column].dtype
        try:
            if pd.api.types.is_datetime64_any_dtype(kind) and not pd.api.types.is_datetime64_any_dtype(batch[column]):
                converted[column] = pd.to_datetime(batch[column]).astype(kind)
            elif pd.api.types.is_numeric_dtype(kind) and not pd.api.types.is_numeric_dtype(batch[column]):
                converted[column] = pd.to_numeric(batch[column])
        except (ValueError, TypeError) as exc:
            raise SourceError(f"labelled batch {name}: column {column!r} does not read as {kind}: {exc}") from None
    return batch.assign(**converted) if converted else batch


def window_batches(store: LabelledBatches, count: int) -> list[tuple[str, pd.DataFrame]]:
    """The newest `count` labelled batches, oldest first."""
    return [(meta.batch, store.load(meta.batch)) for meta in store.newest(count)]


def newest_production_positions(frame: pd.DataFrame, fraction: float) -> list[int] | None:
    """Positions of the newest `fraction` of the production rows (the time-ordered holdout),
    or None when the frame holds no production rows."""
    if ORIGIN_COLUMN not in frame.columns:
        return None
    production = [i for i, origin in enumerate(frame[ORIGIN_COLUMN].to_numpy()) if origin != SOURCE]
    if not production:
        return None
    count = max(1, round(fraction * len(production)))
    return production[-count:]
