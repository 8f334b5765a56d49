"""`ml-pipelines init`: write a starter spec whose schema is inferred from a CSV."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from ml_pipelines.cli._common import PIPELINES_DIR, PROJECT_ROOT, fail


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
            force=force,
        )
    except (ValueError, FileExistsError, FileNotFoundError) as exc:
        fail(str(exc))
    print(f"wrote {shown(path)}\nreview the inferred schema, then materialize the pipeline:\n  {next_step(name, path)}")


def shown(path: Path) -> Path:
    """A path as the user would type it here: relative to the current folder when under it."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve()) if path.is_absolute() else path
    except ValueError:
        return path


def materialize_command(name: str) -> str:
    """The exact command that materializes a pipeline of this project, from any folder."""
    executable = Path(sys.executable).parent / "ml-pipelines"
    try:
        executable = executable.relative_to(PROJECT_ROOT)
    except ValueError:
        pass
    command = f"{executable} demo --pipelines {name}"
    return command if Path.cwd().resolve() == PROJECT_ROOT else f"cd {PROJECT_ROOT} && {command}"


def next_step(name: str, spec: Path) -> str:
    if spec.resolve().parent.parent == PIPELINES_DIR:
        return materialize_command(name)
    return f"materialize `{name}_retrain_job` in the code location that loads {spec.resolve().parent.parent}"


def register(app: typer.Typer) -> None:
    app.command("init", help="write a starter spec whose schema is inferred from a CSV")(init)
