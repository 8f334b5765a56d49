"""`ml-pipelines land`: write a production batch into a pipeline's landing folder."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from ml_pipelines.cli._common import PROJECT_ROOT, fail, load_pipeline_spec
from ml_pipelines.settings import Settings


def land(
    name: Annotated[str, typer.Argument(help="pipeline whose landing folder receives the batch", show_default=False)],
    drift: Annotated[float, typer.Option(help="0 = like training data, 1 = a shifted world")] = 0.0,
    rows: Annotated[int, typer.Option(help="rows in the batch")] = 2000,
    seed: Annotated[int | None, typer.Option(help="random seed (default: a fresh one)", show_default=False)] = None,
    labels: Annotated[bool, typer.Option("--labels", help="also land the batch's ground truth, a moment later")] = False,
    label_delay: Annotated[float, typer.Option(help="seconds between the batch and its labels")] = 5.0,
) -> None:
    settings = Settings.from_env()
    from ml_pipelines.core.landing import land_labelled_batch, write_labels

    try:
        spec = load_pipeline_spec(name)
        batch = land_labelled_batch(spec, drift=drift, rows=rows, seed=seed, variables=settings.variables,
                                    base_dir=PROJECT_ROOT)
        print(f"landed {batch.path}")
        if labels:
            time.sleep(max(label_delay, 0.0))  # ground truth arrives after the prediction
            print(f"labels {write_labels(spec, batch, variables=settings.variables, base_dir=PROJECT_ROOT)}")
    except ValueError as exc:
        fail(str(exc))


def register(app: typer.Typer) -> None:
    app.command("land", help="write a production batch into a pipeline's landing folder")(land)
