"""`ml-pipelines trace`: from one prediction back to its model, run, data and gate."""

from __future__ import annotations

from typing import Annotated

import typer

from ml_pipelines.cli._common import fail
from ml_pipelines.settings import Settings


def trace(
    request_id: Annotated[str, typer.Argument(help="the request_id a prediction response carried", show_default=False)],
) -> None:
    settings = Settings.from_env()
    from ml_pipelines.core.layout import LocalLayout, registry_for
    from ml_pipelines.core.trace import trace_lines

    registry = registry_for(settings)
    try:
        lines = trace_lines(request_id, LocalLayout(settings.home).audit, registry)
    except LookupError as exc:
        fail(str(exc), stderr=False)
    print("\n".join(lines))


def register(app: typer.Typer) -> None:
    app.command("trace", help="trace a prediction back to its model, run, data and gate")(trace)
