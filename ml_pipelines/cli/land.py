"""`ml-pipelines land`: write a production batch into a pipeline's landing folder."""

from __future__ import annotations

from typing import Annotated

import typer

from ml_pipelines.cli._common import PIPELINES_DIR, PROJECT_ROOT, fail
from ml_pipelines.settings import Settings


def load_pipeline_spec(name: str):
    """The spec of a shipped pipeline (ml_pipelines/defs/pipelines/<name>/defs.yaml)."""
    from ml_pipelines.core.spec_files import load_spec_document
    from ml_pipelines.spec import PipelineSpec

    path = PIPELINES_DIR / name / "defs.yaml"
    if not path.exists():
        raise ValueError(f"no pipeline {name!r} at {path}")
    return PipelineSpec.model_validate(load_spec_document(path)["attributes"])


def land(
    name: Annotated[str, typer.Argument(help="pipeline whose landing folder receives the batch", show_default=False)],
    drift: Annotated[float, typer.Option(help="0 = like training data, 1 = strongly drifted")] = 0.0,
    rows: Annotated[int, typer.Option(help="rows in the batch")] = 2000,
    seed: Annotated[int | None, typer.Option(help="random seed (default: a fresh one)", show_default=False)] = None,
) -> None:
    settings = Settings.from_env()
    from ml_pipelines.core.landing import land_batch

    try:
        path = land_batch(load_pipeline_spec(name), drift=drift, rows=rows, seed=seed,
                          variables=settings.variables, base_dir=PROJECT_ROOT)
    except ValueError as exc:
        fail(str(exc))
    print(f"landed {path}")


def register(app: typer.Typer) -> None:
    app.command("land", help="write a production batch into a pipeline's landing folder")(land)
