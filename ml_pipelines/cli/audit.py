"""`ml-pipelines audit`: the audit trail, one line per prediction, oldest first."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ml_pipelines.settings import Settings


def audit(
    pipeline: Annotated[str, typer.Argument(help="pipeline whose predictions to print", show_default=False)],
    since: Annotated[str | None, typer.Option(help="ISO date or time (UTC)", show_default=False)] = None,
    limit: Annotated[int | None, typer.Option(help="print at most this many", show_default=False)] = None,
) -> None:
    settings = Settings.from_env()
    from ml_pipelines.core.layout import LocalLayout
    from ml_pipelines.core.prediction_log import iter_audit

    count = 0
    for record in iter_audit(LocalLayout(settings.home).audit, pipeline, since):
        if limit is not None and count >= limit:
            break
        print(
            f"{record['timestamp']} {record['request_id']}#{record.get('index', 0)} "
            f"caller={record.get('caller') or '-'} version={record['model_version']} "
            f"input={json.dumps(record['input'], sort_keys=True)} output={json.dumps(record['output'], sort_keys=True)}"
        )
        count += 1
    if count == 0:
        print(f"no predictions logged for {pipeline}" + (f" since {since}" if since else ""))


def register(app: typer.Typer) -> None:
    app.command("audit", help="print the audit trail, one line per prediction")(audit)
