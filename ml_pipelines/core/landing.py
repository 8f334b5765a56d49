"""Land a production batch: rows from a spec's synthetic generator, written into the
landing folder its monitoring reads (`ml-pipelines land`, the demo and the tests);
with labels, the ground truth for those rows goes into the labels folder too.

Files appear whole (written aside, then renamed), so a sensor never reads half of one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from ml_pipelines.core.errors import InputError
from ml_pipelines.core.labels import LABELLED_AT
from ml_pipelines.core.sources import expand_variables, load_source
from ml_pipelines.spec import FileLabels, FileSource, PipelineSpec


@dataclass(frozen=True)
class LandedBatch:
    path: Path  # the production batch (no target)
    labels: pd.DataFrame  # its ground truth: the id column(s), the target
    stamp: str


def _folder(pattern: str, variables: Mapping[str, str], base_dir: Path | None) -> Path:
    path = Path(expand_variables(pattern, variables))
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.parent


def _write(frame: pd.DataFrame, path: Path, kind: str) -> Path:
    tmp = path.parent / f".{path.name}.tmp"
    if kind == "csv":
        frame.to_csv(tmp, index=False)
    else:
        frame.to_parquet(tmp, index=False)
    tmp.replace(path)
    return path


def generate_batch(spec: PipelineSpec, *, drift: float, rows: int, seed: int | None, stamp: str) -> pd.DataFrame:
    """Rows from the spec's generator (target included); each gets an id when production data has one."""
    source = spec.monitoring.production_data
    if not isinstance(source, FileSource):
        raise InputError(f"{spec.name}: monitoring.production_data is not a landing folder (csv/parquet)")
    if spec.source.kind != "synthetic":
        raise InputError(f"{spec.name}: only synthetic sources can generate batches")
    params = {**spec.source.params, "rows": rows, "seed": seed, "drift": drift}
    frame = load_source(spec.source.model_copy(update={"params": params})).frame
    id_column = getattr(source, "id_column", None)
    if id_column and id_column not in frame.columns:
        frame.insert(0, id_column, [f"{stamp}-{i:06d}" for i in range(len(frame))])
    return frame


def land_batch(
    spec: PipelineSpec,
    *,
    drift: float,
    rows: int,
    seed: int | None,
    variables: Mapping[str, str],
    base_dir: Path | None = None,
) -> Path:
    """Write one batch into the landing folder and return its path.

    `variables` resolve ${VAR} in the landing path (Settings.variables); a relative path
    is taken from base_dir. drift=0 draws rows like the training data, 1 a shifted world."""
    return land_labelled_batch(spec, drift=drift, rows=rows, seed=seed, variables=variables, base_dir=base_dir).path


def land_labelled_batch(
    spec: PipelineSpec,
    *,
    drift: float,
    rows: int,
    seed: int | None,
    variables: Mapping[str, str],
    base_dir: Path | None = None,
) -> LandedBatch:
    """land_batch, returning the batch's ground truth too (write it later with write_labels)."""
    source = spec.monitoring.production_data
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    frame = generate_batch(spec, drift=drift, rows=rows, seed=seed, stamp=stamp)
    folder = _folder(source.path, variables, base_dir)
    path = _write(frame.drop(columns=[spec.target]), folder / f"batch-{stamp}-drift{drift:g}.{source.kind}",
                  source.kind)
    ids = spec.monitoring.production_id_columns() or []
    return LandedBatch(path, frame[[c for c in ids if c in frame.columns] + [spec.target]], stamp)


def write_labels(
    spec: PipelineSpec, batch: LandedBatch, *, variables: Mapping[str, str], base_dir: Path | None = None
) -> Path:
    """The batch's ground truth into the labels folder (monitoring.labels must be files),
    stamped with the time it became known."""
    labels = spec.monitoring.labels
    if not isinstance(labels, FileLabels):
        raise InputError(f"{spec.name}: monitoring.labels is not a labels folder (csv/parquet)")
    frame = batch.labels.rename(columns=dict(zip(spec.monitoring.production_id_columns(),
                                                 spec.monitoring.label_id_columns())))
    frame = frame.assign(**{LABELLED_AT: datetime.now(UTC).isoformat()})
    folder = _folder(labels.path, variables, base_dir)
    return _write(frame, folder / f"labels-{batch.path.stem}.{labels.kind}", labels.kind)
