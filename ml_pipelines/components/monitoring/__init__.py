"""Monitoring definitions for one pipeline: production_data and drift_report (with the
`no_drift` check) in assets.py; the landing and drift sensors and the schedules in
sensors.py."""

from typing import TYPE_CHECKING

import dagster as dg

from ml_pipelines.components.monitoring.assets import (
    drift_report_asset,
    monitor_job,
    production_data_asset,
    production_partitions,
)
from ml_pipelines.components.monitoring.sensors import monitoring_triggers

if TYPE_CHECKING:
    from ml_pipelines.components.factory import PipelineContext


def build_monitoring_defs(ctx: "PipelineContext", *, retrain_job) -> dg.Definitions:
    partitions_def = production_partitions(ctx)  # one definition shared by assets, job and sensor
    production_data = production_data_asset(ctx, partitions_def)
    drift_report = drift_report_asset(ctx, partitions_def)
    job = monitor_job(ctx, partitions_def)
    sensors, schedules = monitoring_triggers(ctx, partitions_def, monitor_job=job, retrain_job=retrain_job)
    return dg.Definitions(assets=[production_data, drift_report], jobs=[job], sensors=sensors, schedules=schedules)
