"""`ml-pipelines reproduce <pipeline> <version>` and `ml-pipelines diff <pipeline> <v1> <v2>`: rebuild a
version from what the registry keeps and compare it with its record (core.reproduce), and compare two
versions (core.version_diff). Neither changes the registry.

Exit status: 0 when the rebuild matches (diff: always, once it ran), 1 when it does not, 2 when it cannot
run (a file that fails its checksum, a collected version, a bad name), with one `error: ...` line."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING, Annotated

import typer

from ml_pipelines.cli._common import exit_with, fail
from ml_pipelines.settings import Settings

if TYPE_CHECKING:
    from ml_pipelines.core.registry import ModelRegistry

PIPELINE = typer.Argument(help="pipeline name", show_default=False)


class Format(str, Enum):
    text = "text"
    json = "json"


FORMAT = typer.Option("--format", help="text, or one JSON object for tools")


def run_on_registry(verb: Callable[[ModelRegistry], int]) -> None:
    """Run verb against the registry the settings point at; any deterministic error (InputError: a checksum
    mismatch, a missing or collected snapshot, a bad name) prints `error: ...` and exits 2."""
    from ml_pipelines.core.errors import InputError
    from ml_pipelines.core.layout import registry_for

    try:
        code = verb(registry_for(Settings.from_env()))
    except InputError as exc:
        fail(str(exc))
    exit_with(code)


def reproduce(
    pipeline: Annotated[str, PIPELINE],
    version: Annotated[str, typer.Argument(help="the version to rebuild, as `registry list` prints it",
                                           show_default=False)],
    tolerance: Annotated[float | None, typer.Option(
        help="largest allowed absolute difference in metrics and predictions (default: 0 for scikit-learn "
             "models, 0.001 for torch)", show_default=False, min=0)] = None,
    output: Annotated[Format, FORMAT] = Format.text,
) -> None:
    from ml_pipelines.core.reproduce import report_lines
    from ml_pipelines.core.reproduce import reproduce as rebuild

    def verb(registry: ModelRegistry) -> int:
        report = rebuild(registry, pipeline, version, tolerance=tolerance,
                         log=lambda line: print(line, file=sys.stderr, flush=True))
        print(json.dumps(report.to_dict(), indent=2) if output is Format.json else "\n".join(report_lines(report)))
        return 0 if report.matches else 1

    run_on_registry(verb)


def diff(
    pipeline: Annotated[str, PIPELINE],
    v1: Annotated[str, typer.Argument(help="the older version", show_default=False)],
    v2: Annotated[str, typer.Argument(help="the newer version", show_default=False)],
    output: Annotated[Format, FORMAT] = Format.text,
) -> None:
    from ml_pipelines.core.version_diff import diff_lines, diff_versions

    def verb(registry: ModelRegistry) -> int:
        result = diff_versions(registry, pipeline, v1, v2)
        print(json.dumps(result.to_dict(), indent=2, default=str) if output is Format.json
              else "\n".join(diff_lines(result)))
        return 0

    run_on_registry(verb)


def register(app: typer.Typer) -> None:
    app.command("reproduce", help="rebuild a version from its stored data and spec, and check it matches")(reproduce)
    app.command("diff", help="what changed between two versions: rows, schema, distributions, spec, "
                             "model, metrics, environment")(diff)
