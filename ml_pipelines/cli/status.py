"""`ml-pipelines status`: is every pipeline healthy? Per pipeline: the champion and its age,
the last successful and last finished run, queued and running runs, the latest drift report
and production performance, and every failing check, read from the registry and the Dagster
instance (DAGSTER_HOME). Exits 1 when a pipeline needs a human (core.health says what), so
it can run from cron or as a Kubernetes probe; `--json` for tools."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ml_pipelines.cli._common import PIPELINES_DIR, PROJECT_ROOT, exit_with, fail, load_pipeline_spec
from ml_pipelines.settings import Settings

# every check a pipeline's assets can carry (components/: ingestion, evaluation, monitoring);
# ml_pipelines_tests/cli/test_status.py holds this list to what the factory builds
CHECKS = (
    ("raw_data", "matches_expectation_suite"),
    ("evaluation", "meets_floor"),
    ("evaluation", "beats_champion"),
    ("drift_report", "no_drift"),
    ("production_performance", "performance_holds"),
)
PIPELINE_TAG = "pipeline"  # every job of a pipeline tags its runs with it (components/factory.py, monitoring/)


def instance_home(settings: Settings) -> Path:
    home = settings.dagster_home or PROJECT_ROOT / ".dagster_home"
    if not home.is_dir():
        fail(f"no Dagster instance at {home}: set DAGSTER_HOME to the instance the pipelines run on")
    return home


def status(
    pipelines: Annotated[list[str] | None, typer.Argument(
        help="pipelines to report on (default: every spec under ml_pipelines/defs/pipelines)",
        show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document, for tools")] = False,
) -> None:
    settings = Settings.from_env()
    import dagster as dg

    from ml_pipelines.core.health import exit_code, utc_now
    from ml_pipelines.core.layout import registry_for

    names = pipelines or sorted(path.parent.name for path in PIPELINES_DIR.glob("*/defs.yaml"))
    try:
        specs = [load_pipeline_spec(name) for name in names]
    except ValueError as exc:
        fail(str(exc))
    registry = registry_for(settings)
    with dg.DagsterInstance.from_config(str(instance_home(settings))) as instance:
        health = [pipeline_health(instance, registry, spec) for spec in specs]
    now = utc_now()
    if as_json:
        print(json.dumps({"ok": not exit_code(health), "pipelines": [h.to_json(now) for h in health]}, indent=2))
    else:
        print("\n\n".join("\n".join(h.lines(now)) for h in health))
    exit_with(exit_code(health))


def pipeline_health(instance: Any, registry: Any, spec: Any) -> Any:
    """What the registry and the instance say about one pipeline."""
    from ml_pipelines.core.health import PipelineHealth

    champion = registry.get_alias(spec.name, "champion")
    record = registry.get_version(spec.name, champion) if champion else None
    monitoring = spec.monitoring
    return PipelineHealth(
        pipeline=spec.name, champion=champion, champion_created_at=record.created_at if record else None,
        last_success=_last_run(instance, spec.name, ["SUCCESS"]),
        last_finished=_last_run(instance, spec.name, ["SUCCESS", "FAILURE", "CANCELED"]),
        queued=_run_ids(instance, spec.name, ["QUEUED"]),
        running=_run_ids(instance, spec.name, ["NOT_STARTED", "STARTING", "STARTED", "CANCELING"]),
        drift=_drift(instance, spec.name), monitored=monitoring.production_data is not None,
        performance=_performance(instance, spec.name), labelled=monitoring.labels is not None,
        checks=_checks(instance, spec.name),
    )


def _runs_filter(pipeline: str, statuses: list[str]) -> Any:
    import dagster as dg

    return dg.RunsFilter(tags={PIPELINE_TAG: pipeline}, statuses=[dg.DagsterRunStatus(s) for s in statuses])


def _last_run(instance: Any, pipeline: str, statuses: list[str]) -> Any:
    from ml_pipelines.core.health import RunFact

    records = instance.get_run_records(filters=_runs_filter(pipeline, statuses), limit=1)
    if not records:
        return None
    record = records[0]
    at = record.end_time or record.start_time
    return RunFact(record.dagster_run.run_id, record.dagster_run.job_name, record.dagster_run.status.value, at)


def _run_ids(instance: Any, pipeline: str, statuses: list[str]) -> list[str]:
    return [run.run_id for run in instance.get_runs(filters=_runs_filter(pipeline, statuses))]


def _latest(instance: Any, pipeline: str, asset: str) -> tuple[Any, dict[str, Any]] | None:
    """The latest materialization of <pipeline>/<asset> and its metadata as plain values."""
    import dagster as dg

    event = instance.get_latest_materialization_event(dg.AssetKey([pipeline, asset]))
    if event is None or event.asset_materialization is None:
        return None
    materialization = event.asset_materialization
    return event, {key: value.value for key, value in materialization.metadata.items()}


def _drift(instance: Any, pipeline: str) -> Any:
    from ml_pipelines.core.health import DriftFact

    latest = _latest(instance, pipeline, "drift_report")
    if latest is None:
        return None
    event, metadata = latest
    return DriftFact(event.timestamp, event.asset_materialization.partition, bool(metadata.get("dataset_drifted")),
                     metadata.get("share_drifted"))


def _performance(instance: Any, pipeline: str) -> Any:
    from ml_pipelines.core.health import PerformanceFact

    latest = _latest(instance, pipeline, "production_performance")
    if latest is None:
        return None
    event, metadata = latest
    return PerformanceFact(event.timestamp, event.asset_materialization.partition,
                           bool(metadata.get("performance_holds", True)), str(metadata.get("performance_reason", "")))


def _checks(instance: Any, pipeline: str) -> list[Any]:
    """The latest evaluation of each of the pipeline's checks that has run."""
    import dagster as dg

    from ml_pipelines.core.health import CheckFact

    keys = [dg.AssetCheckKey(dg.AssetKey([pipeline, asset]), name) for asset, name in CHECKS]
    found = []
    for key, record in instance.event_log_storage.get_latest_asset_check_execution_by_key(keys).items():
        event = record.event.dagster_event if record.event is not None else None
        evaluation = event.event_specific_data if event is not None else None
        if not isinstance(evaluation, dg.AssetCheckEvaluation):
            continue  # planned, or its step failed before it was evaluated
        found.append(CheckFact(key.asset_key.path[-1], key.name, evaluation.passed, bool(evaluation.blocking),
                               evaluation.description or "", record.event.timestamp))
    return sorted(found, key=lambda c: (c.asset, c.check))


def register(app: typer.Typer) -> None:
    app.command("status", help="is every pipeline healthy? exits 1 when one needs a human (for cron or a "
                "probe)")(status)
