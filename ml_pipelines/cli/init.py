"""`ml-pipelines init`: write a starter spec whose schema is inferred from a CSV."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from ml_pipelines.cli._common import PIPELINES_DIR, fail


class Task(str, Enum):
    auto = "auto"
    classification = "classification"
    regression = "regression"


def init(
    name: Annotated[str, typer.Argument(help="pipeline name ([a-z][a-z0-9_]*)", show_default=False)],
    source: Annotated[Path, typer.Option("--from", help="CSV file to infer from", show_default=False)],
    target: Annotated[str, typer.Option("--target", help="column to predict", show_default=False)],
    task: Annotated[Task, typer.Option("--task", help="what to predict; auto infers it from the target")] = Task.auto,
    out: Annotated[
        Path | None, typer.Option("--out", help=f"pipelines folder (default: {PIPELINES_DIR})", show_default=False)
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing spec")] = False,
) -> None:
    from ml_pipelines.core.scaffold import write_starter_spec

    try:
        path = write_starter_spec(
            name,
            source,
            target,
            task=task.value,
            pipelines_dir=out if out is not None else PIPELINES_DIR,
            project_root=Path.cwd(),
            force=force,
        )
    except (ValueError, FileExistsError, FileNotFoundError) as exc:
        fail(str(exc))
    print(f"wrote {path}\nreview the inferred schema, then materialize `{name}_retrain_job`.")


def register(app: typer.Typer) -> None:
    app.command("init", help="write a starter spec whose schema is inferred from a CSV")(init)
