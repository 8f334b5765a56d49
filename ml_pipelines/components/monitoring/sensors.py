"""What starts monitoring and retraining runs: the landing sensor (a partition per
landed file), the drift sensor (retrain on drift, with a cursor, run keys and a
cooldown), the daily drift check of the prediction log, and the retrain schedule."""

import hashlib
import json
import os
import time
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from ml_pipelines.components.policies import REASON_DETAIL_TAG, RETRAIN_REASON_TAG
from ml_pipelines.core.labels import feedback_dir
from ml_pipelines.core.retrain_policy import (
    DRIFT,
    PERFORMANCE,
    DriftEvent,
    PerformanceEvent,
    RetrainCursor,
    Signal,
    decide_retrain,
)
from ml_pipelines.core.sources import resolve_paths
from ml_pipelines.resources import PredictionLogResource
from ml_pipelines.settings import Settings
from ml_pipelines.spec import FeedbackLabels, FileSource, SqlLabels

if TYPE_CHECKING:
    from ml_pipelines.components.factory import PipelineContext


def _enabled(ctx: "PipelineContext"):
    running = ctx.spec.monitoring.sensors_enabled
    return (
        dg.DefaultSensorStatus.RUNNING if running else dg.DefaultSensorStatus.STOPPED,
        dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED,
    )


def monitoring_triggers(
    ctx: "PipelineContext", partitions_def: dg.PartitionsDefinition, *, monitor_job, retrain_job, labels_job=None
) -> tuple[list[dg.SensorDefinition], list[dg.ScheduleDefinition]]:
    """Sensors and schedules for one pipeline's monitoring."""
    retrain = ctx.spec.monitoring.retrain
    sensors = [retrain_sensor(ctx, retrain_job, DRIFT, ctx.key("drift_report"), _drift_events, retrain.on_drift)]
    schedules = []
    if isinstance(ctx.spec.monitoring.production_data, FileSource):
        sensors.append(landing_sensor(ctx, partitions_def, monitor_job))
    else:
        schedules.append(drift_check_schedule(ctx, monitor_job))
    if labels_job is not None:
        sensors.append(labels_sensor(ctx, partitions_def, labels_job))
        sensors.append(retrain_sensor(ctx, retrain_job, PERFORMANCE, ctx.key("production_performance"),
                                      _performance_events, retrain.on_performance))
    if retrain.cron:
        schedules.append(
            dg.ScheduleDefinition(
                name=f"{ctx.name}_retrain_schedule",
                job=retrain_job,
                cron_schedule=retrain.cron,
                default_status=_enabled(ctx)[1],
                tags={"ml_pipelines/trigger": "schedule", RETRAIN_REASON_TAG: "schedule"},
            )
        )
    return sensors, schedules


def _records_since(context: dg.SensorEvaluationContext, key: dg.AssetKey, cursor: RetrainCursor):
    return context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, after_storage_id=cursor.last_storage_id), limit=200, ascending=True
    ).records


def _value(materialization, name: str, default):
    entry = materialization.metadata.get(name)
    return entry.value if entry is not None else default


def _drift_events(records) -> list[DriftEvent]:
    return [
        DriftEvent(r.storage_id, r.asset_materialization.partition,
                   bool(_value(r.asset_materialization, "dataset_drifted", False)),
                   float(_value(r.asset_materialization, "share_drifted", 0.0)))
        for r in records
    ]


def _performance_events(records) -> list[PerformanceEvent]:
    events = []
    for r in records:
        m = r.asset_materialization
        holds = bool(_value(m, "performance_holds", True))
        detail = str(_value(m, "performance_reason", "the performance check failed"))
        events.append(PerformanceEvent(r.storage_id, m.partition, not holds, detail))
    return events


def retrain_sensor(ctx: "PipelineContext", retrain_job, signal: Signal, watched: dg.AssetKey, to_events, enabled):
    """`<name>_drift_sensor` or `<name>_performance_sensor`: a retrain request when a watched report
    fires, with a run key per report and the cooldown."""
    retrain = ctx.spec.monitoring.retrain
    name = "drift" if signal is DRIFT else "performance"

    @dg.sensor(
        name=f"{ctx.name}_{name}_sensor",
        job=retrain_job,
        minimum_interval_seconds=ctx.spec.monitoring.sensor_interval_seconds,
        default_status=_enabled(ctx)[0],
        description=f"Requests {ctx.name}_retrain_job when a {signal.report} shows {signal.fired}, "
        f"at most once per {retrain.cooldown_hours} h.",
    )
    def sensor(context: dg.SensorEvaluationContext):
        cursor = RetrainCursor.from_json(context.cursor)
        decision = decide_retrain(
            to_events(_records_since(context, watched, cursor)), cursor, now=time.time(),
            cooldown_hours=retrain.cooldown_hours, enabled=enabled, signal=signal,
        )
        if decision.run_key is None:
            return dg.SensorResult(skip_reason=dg.SkipReason(decision.reason), cursor=decision.cursor.to_json())
        tags = {"ml_pipelines/trigger": "sensor", RETRAIN_REASON_TAG: signal.reason,
                REASON_DETAIL_TAG: decision.reason[:200]}
        return dg.SensorResult(
            run_requests=[dg.RunRequest(run_key=decision.run_key, tags=tags)], cursor=decision.cursor.to_json()
        )

    return sensor


def landing_sensor(ctx: "PipelineContext", partitions_def, monitor_job) -> dg.SensorDefinition:
    source = ctx.spec.monitoring.production_data

    @dg.sensor(
        name=f"{ctx.name}_landing_sensor",
        job=monitor_job,
        minimum_interval_seconds=ctx.spec.monitoring.sensor_interval_seconds,
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


LABELLED_PARTITIONS = 20  # how many of the newest production batches the labels sensor keeps labelling
SQL_LABEL_POLL_S = 3600


def _labels_fingerprint(ctx: "PipelineContext", feedback_root: Path) -> str:
    """Changes whenever new ground truth may have arrived: label files or the feedback log
    (names, sizes, times), or the hour for a SQL table (polled hourly)."""
    labels = ctx.spec.monitoring.labels
    if isinstance(labels, SqlLabels):
        return f"hour-{int(time.time() // SQL_LABEL_POLL_S)}"
    if isinstance(labels, FeedbackLabels):
        paths = sorted(str(p) for p in feedback_dir(feedback_root, ctx.name).glob("*/*.jsonl"))
    else:
        paths = resolve_paths(labels.path, ctx.base_dir, Settings.from_env().variables)
    stats = [(p, os.path.getsize(p), os.path.getmtime(p)) for p in paths if "://" not in p]
    return hashlib.sha256(json.dumps(stats).encode()).hexdigest()[:16]


def _fully_labelled(context: dg.SensorEvaluationContext, labels_key: dg.AssetKey, partition: str) -> bool:
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=labels_key, asset_partitions=[partition]), limit=1
    ).records
    return bool(records) and _value(records[0].asset_materialization, "missing_labels", 1) == 0


def labels_sensor(ctx: "PipelineContext", partitions_def, labels_job) -> dg.SensorDefinition:
    labels_key = ctx.key("labels")

    @dg.sensor(
        name=f"{ctx.name}_labels_sensor",
        job=labels_job,
        minimum_interval_seconds=ctx.spec.monitoring.sensor_interval_seconds,
        default_status=_enabled(ctx)[0],
        description=f"When new ground truth arrives, re-joins labels for the newest {LABELLED_PARTITIONS} "
        "production batches that still miss some, and measures production performance on them.",
    )
    def sensor(context: dg.SensorEvaluationContext, prediction_log: PredictionLogResource):
        seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
        fingerprint = _labels_fingerprint(ctx, prediction_log.feedback_path)
        keys = partitions_def.get_partition_keys(dynamic_partitions_store=context.instance)[-LABELLED_PARTITIONS:]
        todo = [k for k in keys if seen.get(k) != fingerprint and not _fully_labelled(context, labels_key, k)]
        cursor = json.dumps({k: fingerprint if k in todo else seen.get(k, "") for k in keys}, sort_keys=True)
        if not todo:
            return dg.SensorResult(skip_reason=dg.SkipReason("no new ground truth for unlabelled batches"),
                                   cursor=cursor)
        return dg.SensorResult(
            run_requests=[dg.RunRequest(partition_key=k, run_key=f"labels-{k}-{fingerprint}") for k in todo],
            cursor=cursor,
        )

    return sensor
