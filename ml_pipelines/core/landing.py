"""Write a production batch into a pipeline's landing folder (the demo's and the
tests' stand-in for an upstream system), from the spec's synthetic generator."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from ml_pipelines.core.sources import expand_variables, load_source
from ml_pipelines.settings import Settings
from ml_pipelines.spec import FileSource, PipelineSpec


def land_batch(
    spec: PipelineSpec,
    *,
    drift: float,
    rows: int,
    seed: int | None,
    base_dir: Path | None = None,
    variables: Mapping[str, str] | None = None,
) -> Path:
    """One batch written atomically as <landing folder>/batch-<time>-drift<d>.<csv|parquet>."""
    source = spec.monitoring.production_data
    if not isinstance(source, FileSource):
        raise ValueError(f"{spec.name}: monitoring.production_data is not a landing folder (csv/parquet)")
    if spec.source.kind != "synthetic":
        raise ValueError(f"{spec.name}: only synthetic sources can generate batches")
    pattern = Path(expand_variables(source.path, variables if variables is not None else Settings.from_env().variables))
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
    tmp.replace(path)  # the sensor never sees a half-written file
    return path
