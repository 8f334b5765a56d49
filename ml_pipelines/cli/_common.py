"""What the command modules share: where the project is, and how a user error ends a command."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import typer

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PIPELINES_DIR = PROJECT_ROOT / "ml_pipelines" / "defs" / "pipelines"


def fail(message: str, *, code: int = 2, stderr: bool = True) -> NoReturn:
    """Print `error: <message>` and end the command with `code`."""
    print(f"error: {message}", file=sys.stderr if stderr else sys.stdout)
    raise typer.Exit(code)


def exit_with(code: int) -> None:
    """End the command with a non-zero status; 0 just returns."""
    if code:
        raise typer.Exit(code)


def load_pipeline_spec(name: str):
    """The spec of a pipeline in the project (ml_pipelines/defs/pipelines/<name>/defs.yaml)."""
    import yaml

    from ml_pipelines.spec import PipelineSpec

    path = PIPELINES_DIR / name / "defs.yaml"
    if not path.exists():
        raise ValueError(f"no pipeline {name!r} at {path}")
    return PipelineSpec.model_validate(yaml.safe_load(path.read_text())["attributes"])
