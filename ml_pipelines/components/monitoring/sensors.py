"""What starts monitoring and retraining runs: the landing sensor (a partition per
landed file), the drift sensor (retrain on drift, with a cursor, run keys and a
cooldown), the daily drift check of the prediction log, and the retrain schedule."""

import json
import os
import time
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from ml_pipelines.core.retrain_policy import DriftEvent, RetrainCursor, decide_retrain
from ml_pipelines.core.sources import resolve_paths
from ml_pipelines.settings import Settings
from ml_pipelines.spec import FileSource

if TYPE_CHECKING:
    from ml_pipelines.components.factory import PipelineContext

SENSOR_INTERVAL_S = 15


def _enabled(ctx: "PipelineContext"):
    running = ctx.spec.monitoring.sensors_enabled
    return (
        dg.DefaultSensorStatus.RUNNING if running else dg.DefaultSensorStatus.STOPPED,
        dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED,
    )


def monitoring_triggers(
    ctx: "PipelineContext", partitions_def: dg.PartitionsDefinition, *, monitor_job, retrain_job
) -> tuple[list[dg.SensorDefinition], list[dg.ScheduleDefinition]]:
    """Sensors and schedules for one pipeline's monitoring."""
    sensors = [drift_sensor(ctx, retrain_job)]
    schedules = []
    if isinstance(ctx.spec.monitoring.production_data, FileSource):
        sensors.append(landing_sensor(ctx, partitions_def, monitor_job))
    else:
        schedules.append(drift_check_schedule(ctx, monitor_job))
    retrain = ctx.spec.monitoring.retrain
    if retrain.cron:
        schedules.append(
            dg.ScheduleDefinition(
                name=f"{ctx.name}_retrain_schedule",
                job=retrain_job,
                cron_schedule=retrain.cron,
                default_status=_enabled(ctx)[1],
                tags={"ml_pipelines/trigger": "schedule"},
            )
        )
    return sensors, schedules


def _drift_events(context: dg.SensorEvaluationContext, drift_key: dg.AssetKey, cursor: RetrainCursor):
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=drift_key, after_storage_id=cursor.last_storage_id),
        limit=200,
        ascending=True,
    ).records
    events = []
    for record in records:
        materialization = record.asset_materialization
        flag = materialization.metadata.get("dataset_drifted")
        share = materialization.metadata.get("share_drifted")
        events.append(
            DriftEvent(
                record.storage_id,
                materialization.partition,
                bool(flag.value) if flag is not None else False,
                float(share.value) if share is not None else 0.0,
            )
        )
    return events


def drift_sensor(ctx: "PipelineContext", retrain_job) -> dg.SensorDefinition:
    retrain = ctx.spec.monitoring.retrain
    drift_key = ctx.key("drift_report")

    @dg.sensor(
        name=f"{ctx.name}_drift_sensor",
        job=retrain_job,
        minimum_interval_seconds=SENSOR_INTERVAL_S,
        default_status=_enabled(ctx)[0],
        description=f"Requests {ctx.name}_retrain_job when a drift report says the data drifted, "
        f"at most once per {retrain.cooldown_hours} h.",
    )
    def sensor(context: dg.SensorEvaluationContext):
        cursor = RetrainCursor.from_json(context.cursor)
        decision = decide_retrain(
            _drift_events(context, drift_key, cursor), cursor, now=time.time(),
            cooldown_hours=retrain.cooldown_hours, on_drift=retrain.on_drift,
        )
        if decision.run_key is None:
            return dg.SensorResult(skip_reason=dg.SkipReason(decision.reason), cursor=decision.cursor.to_json())
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    run_key=decision.run_key,
                    tags={"ml_pipelines/trigger": "sensor", "ml_pipelines/reason": decision.reason[:200]},
                )
            ],
            cursor=decision.cursor.to_json(),
        )

    return sensor


def landing_sensor(ctx: "PipelineContext", partitions_def, monitor_job) -> dg.SensorDefinition:
    source = ctx.spec.monitoring.production_data

    @dg.sensor(
        name=f"{ctx.name}_landing_sensor",
        job=monitor_job,
        minimum_interval_seconds=SENSOR_INTERVAL_S,
        default_status=_enabled(ctx)[0],
        description=f"Adds a production_data partition for each new file at {source.path} and "
        "requests its drift report.",
    )
    def sensor(context: dg.SensorEvaluationContext):
        seen: dict[str, float] = json.loads(context.cursor) if context.cursor else {}
        try:
            files = resolve_paths(source.path, ctx.base_dir, Settings.from_env().variables)
        except ValueError as exc:
            return dg.SkipReason(str(exc))
        new = {}
        for path in files:
            key, mtime = Path(path).name, os.path.getmtime(path)
            if seen.get(key) != mtime:
                new[key] = mtime
        if not new:
            return dg.SensorResult(skip_reason=dg.SkipReason(f"no new files at {source.path}"), cursor=json.dumps(seen))
        existing = set(context.instance.get_dynamic_partitions(partitions_def.name))
        return dg.SensorResult(
            run_requests=[dg.RunRequest(partition_key=key, run_key=f"{key}@{mtime}") for key, mtime in sorted(new.items())],
            dynamic_partitions_requests=[partitions_def.build_add_request(sorted(k for k in new if k not in existing))],
            cursor=json.dumps({**seen, **new}, sort_keys=True),
        )

    return sensor


def drift_check_schedule(ctx: "PipelineContext", monitor_job) -> dg.ScheduleDefinition:
    @dg.schedule(
        name=f"{ctx.name}_drift_check_schedule",
        job=monitor_job,
        cron_schedule=ctx.spec.monitoring.check_cron or "0 * * * *",
        default_status=_enabled(ctx)[1],
        description="Measures drift of today's served predictions.",
    )
    def schedule(context: dg.ScheduleEvaluationContext):
        day = context.scheduled_execution_time.astimezone(UTC).strftime("%Y-%m-%d")
        stamp = context.scheduled_execution_time.strftime("%Y%m%dT%H%M")
        return dg.RunRequest(partition_key=day, run_key=f"{day}@{stamp}")

    return schedule
