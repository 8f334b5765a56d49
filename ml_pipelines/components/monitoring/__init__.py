"""Monitoring definitions for one pipeline: production_data and drift_report (with the
`no_drift` check) in assets.py; labels and production_performance (with the
`performance_holds` check) in performance.py; the landing, labels, drift and
performance sensors and the schedules in sensors.py."""

from typing import TYPE_CHECKING

import dagster as dg

from ml_pipelines.components.monitoring.assets import (
    drift_report_asset,
    monitor_job,
    production_data_asset,
    production_partitions,
)
from ml_pipelines.components.monitoring.performance import labels_asset, production_performance_asset
from ml_pipelines.components.monitoring.sensors import monitoring_triggers

if TYPE_CHECKING:
    from ml_pipelines.components.factory import PipelineContext


def build_monitoring_defs(ctx: "PipelineContext", *, retrain_job) -> dg.Definitions:
    partitions_def = production_partitions(ctx)  # one definition shared by assets, jobs and sensors
    assets = [production_data_asset(ctx, partitions_def), drift_report_asset(ctx, partitions_def)]
    jobs = [monitor_job(ctx, partitions_def)]
    labels_job = None
    if ctx.spec.monitoring.labels is not None:
        assets += [labels_asset(ctx, partitions_def), production_performance_asset(ctx, partitions_def)]
        labels_job = dg.define_asset_job(
            f"{ctx.name}_labels_job",
            selection=dg.AssetSelection.assets(ctx.key("labels"), ctx.key("production_performance")),
            partitions_def=partitions_def,
            tags={"pipeline": ctx.name},
            description="Join the ground truth that has arrived to a production batch and measure the champion "
            "(and the challenger) on it.",
        )
        jobs.append(labels_job)
    sensors, schedules = monitoring_triggers(
        ctx, partitions_def, monitor_job=jobs[0], retrain_job=retrain_job, labels_job=labels_job
    )
    return dg.Definitions(assets=assets, jobs=jobs, sensors=sensors, schedules=schedules)
