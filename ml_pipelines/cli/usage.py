"""`ml-pipelines usage`: CPU-hours, GPU-hours and peak memory of the measured steps in the Dagster
instance (DAGSTER_HOME, default ./.dagster_home), per pipeline, owner or stage, against what
their Kubernetes pods requested, and the `resources` values the measured peaks suggest."""

from __future__ import annotations

import json
from enum import Enum
from typing import Annotated

import typer

from ml_pipelines.cli._common import PROJECT_ROOT, fail
from ml_pipelines.settings import Settings


class By(str, Enum):
    pipeline = "pipeline"
    owner = "owner"
    stage = "stage"


def usage(
    since: Annotated[str, typer.Option("--since", help="how far back: a whole number and s, m, h, d or w")] = "7d",
    by: Annotated[By, typer.Option("--by", help="sum per pipeline, owner or stage")] = By.stage,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object, for scripts")] = False,
) -> None:
    from ml_pipelines.durations import parse_duration

    try:
        window = parse_duration(since)
    except ValueError as exc:
        fail(f"--since: {exc}")
    settings = Settings.from_env()
    home = settings.dagster_home or PROJECT_ROOT / ".dagster_home"
    if not home.is_dir():
        fail(f"no Dagster instance at {home}: set DAGSTER_HOME to the instance folder")

    import dagster as dg

    from ml_pipelines.components.utilisation import recent_records
    from ml_pipelines.core.utilisation import report_text, utilisation_report

    with dg.DagsterInstance.from_config(str(home)) as instance:
        records, started = recent_records(instance, window.total_seconds())
    report = utilisation_report(records, by=by.value, since=started)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    elif not records:
        print(f"no measured steps in {home} since {started:%Y-%m-%d %H:%M} UTC")
    else:
        print(report_text(report))


def register(app: typer.Typer) -> None:
    app.command(
        "usage", help="CPU-hours, GPU-hours and peak memory per pipeline, owner or stage; waste and suggested resources"
    )(usage)
