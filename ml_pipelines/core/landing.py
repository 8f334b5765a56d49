"""Land a production batch: rows from a spec's synthetic generator, written into the
landing folder its monitoring reads (`ml-pipelines land`, the demo and the tests)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from ml_pipelines.core.errors import InputError
from ml_pipelines.core.sources import expand_variables, load_source
from ml_pipelines.spec import FileSource, PipelineSpec


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
    is taken from base_dir. drift=0 draws rows like the training data, 1 strongly drifted.
    The file appears whole (written aside, then renamed), so a sensor never reads half of it.
    """
    source = spec.monitoring.production_data
    if not isinstance(source, FileSource):
        raise InputError(f"{spec.name}: monitoring.production_data is not a landing folder (csv/parquet)")
    if spec.source.kind != "synthetic":
        raise InputError(f"{spec.name}: only synthetic sources can generate batches")
    pattern = Path(expand_variables(source.path, variables))
    if not pattern.is_absolute() and base_dir is not None:
        pattern = base_dir / pattern
    folder = pattern.parent
    folder.mkdir(parents=True, exist_ok=True)
    params = {**spec.source.params, "rows": rows, "seed": seed, "drift": drift}
    batch = load_source(spec.source.model_copy(update={"params": params})).frame.drop(columns=[spec.target])
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    path = folder / f"batch-{stamp}-drift{drift:g}.{source.kind}"
    tmp = folder / f".{path.name}.tmp"
    if source.kind == "csv":
        batch.to_csv(tmp, index=False)
    else:
        batch.to_parquet(tmp, index=False)
    tmp.replace(path)
    return path
