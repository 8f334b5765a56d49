"""Monitoring definitions for one pipeline: production_data, drift_report, the
`no_drift` check, the landing and drift sensors, and the schedules."""

import json
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from ml_pipelines.components import metadata as md
from ml_pipelines.core.drift import DriftReport, ReferenceProfile
from ml_pipelines.core.model_card import publish_card
from ml_pipelines.core.monitoring import PROFILE_FILE, drift_against
from ml_pipelines.core.plots import drift_png
from ml_pipelines.core.prediction_log import read_prediction_log
from ml_pipelines.core.retrain_policy import DriftEvent, RetrainCursor, decide_retrain
from ml_pipelines.core.sources import load_source, read_file, resolve_paths
from ml_pipelines.resources import PredictionLogResource, RegistryResource
from ml_pipelines.settings import Settings
from ml_pipelines.spec import FileSource, PipelineSpec, trusted_roots

PLOTTED_FEATURES = 4


def production_partitions(spec: PipelineSpec) -> dg.PartitionsDefinition:
    """csv/parquet: one dynamic partition per landed file; prediction_log: one per day."""
    source = spec.monitoring.production_data
    if isinstance(source, FileSource):
        return dg.DynamicPartitionsDefinition(name=f"{spec.name}_production_batches")
    return dg.DailyPartitionsDefinition(start_date=source.start_date.isoformat(), end_offset=1)


def _champion_profile(registry, pipeline: str) -> tuple[str, ReferenceProfile, object]:
    version = registry.get_alias(pipeline, "champion")
    if version is None:
        raise dg.Failure(f"{pipeline}: no champion yet, so there is no reference to measure drift against")
    with tempfile.TemporaryDirectory(prefix="ml_pipelines-profile-") as tmp:
        directory = registry.fetch_artifacts(pipeline, version, Path(tmp))  # checksums verified
        profile_path = directory / PROFILE_FILE
        if not profile_path.exists():
            raise dg.Failure(f"{pipeline}: champion {version} has no reference profile; retrain it")
        return version, ReferenceProfile.from_bytes(profile_path.read_bytes()), directory


def _drift_plots(report: DriftReport, profile: ReferenceProfile, batch: pd.DataFrame) -> dict[str, bytes]:
    ranked = sorted(
        (f for f in report.features if f.statistics),
        key=lambda f: (not f.drifted, -(f.statistics.get("psi") or 0)),
    )[:PLOTTED_FEATURES]
    plots = {}
    for feature in ranked:
        if feature.kind == "numeric":
            reference = profile.numeric[feature.column].quantiles
            current = batch[feature.column].to_numpy(dtype=np.float64, na_value=np.nan)
            plots[feature.column] = drift_png(feature.column, reference, current[~np.isnan(current)])
        else:
            counts = batch[feature.column].dropna().astype("str").value_counts()
            plots[feature.column] = drift_png(
                feature.column, profile.categorical[feature.column].counts, {str(k): int(v) for k, v in counts.items()}
            )
    return plots


def build_monitoring_defs(
    spec: PipelineSpec, *, retrain_job, base_dir: Path | None, common: dict
) -> dg.Definitions:
    name = spec.name
    monitoring = spec.monitoring
    source = monitoring.production_data
    production_key = dg.AssetKey([name, "production_data"])
    drift_key = dg.AssetKey([name, "drift_report"])
    partitions_def = production_partitions(spec)
    sensor_status = dg.DefaultSensorStatus.RUNNING if monitoring.sensors_enabled else dg.DefaultSensorStatus.STOPPED
    schedule_status = (
        dg.DefaultScheduleStatus.RUNNING if monitoring.sensors_enabled else dg.DefaultScheduleStatus.STOPPED
    )
    from_files = isinstance(source, FileSource)

    @dg.asset(
        key=production_key,
        partitions_def=partitions_def,
        description=f"{spec.description or name}\n\n"
        + (
            f"Production batches landed at {source.path}, one partition per file."
            if from_files
            else "The serving audit trail (every prediction's input), one partition per day."
        ),
        kinds={"pandas"},
        tags={"stage": "monitoring", "pipeline": name},
        **common,
    )
    def production_data(
        context: dg.AssetExecutionContext, prediction_log: PredictionLogResource
    ) -> dg.Output[pd.DataFrame]:
        key = context.partition_key
        if from_files:
            matches = [p for p in resolve_paths(source.path, base_dir, Settings.from_env().variables) if Path(p).name == key]
            if not matches:
                raise dg.Failure(f"{name}: landed file {key!r} no longer matches {source.path}")
            frame = read_file(source.kind, matches[0], source.read_options)
            origin = matches[0]
        else:
            frame = read_prediction_log(prediction_log.path, name, key)
            origin = str(prediction_log.path / name / key)
        return dg.Output(frame, metadata={"origin": origin, **md.frame_metadata(frame)})

    @dg.asset(
        key=drift_key,
        partitions_def=partitions_def,
        ins={"production_data": dg.AssetIn(production_key)},
        description=f"{spec.description or name}\n\n"
        "Per-feature drift of a production batch against the champion's reference profile "
        f"(method {monitoring.drift.method}; the batch counts as drifted when at least "
        f"{monitoring.drift.share:.0%} of features drift), plus drift of the champion's predictions.",
        kinds={"pandas"},
        tags={"stage": "monitoring", "pipeline": name},
        check_specs=[
            dg.AssetCheckSpec(
                "no_drift",
                asset=drift_key,
                description=f"Fewer than {monitoring.drift.share:.0%} of the watched features drift against the "
                "champion's training data. A failure warns; the drift sensor requests retraining.",
            )
        ],
        **common,
    )
    def drift_report(context: dg.AssetExecutionContext, production_data: pd.DataFrame, registry: RegistryResource):
        reg = registry.registry()
        version, profile, _ = _champion_profile(reg, name)
        model = reg.load_model(name, version, trusted_roots(spec))
        report = drift_against(profile, production_data, monitoring.drift, model, spec.task)
        metadata = {
            "champion": version,
            "dataset_drifted": report.dataset_drifted,
            "share_drifted": report.share_drifted,
            "share_threshold": report.share_threshold,
            "drifted_columns": dg.MetadataValue.json(report.drifted_columns()),
            "missing_columns": dg.MetadataValue.json(report.missing_columns),
            "rows": report.rows,
            "features": md.markdown_table(
                ["column", "kind", "method", "value", "threshold", "verdict", "psi", "ks", "wasserstein (normed)",
                 "jensen-shannon", "null share", "new categories / note"],
                report.table_rows(),
            ),
        }
        if report.prediction is not None:
            metadata["prediction_drift"] = report.prediction.drifted
            metadata["prediction_drift_value"] = report.prediction.value
        reg.record_drift(name, version, {
            "time": datetime.now(UTC).isoformat(), "partition": context.partition_key, "run_id": context.run_id,
            "share_drifted": report.share_drifted, "dataset_drifted": report.dataset_drifted,
            "drifted_columns": report.drifted_columns(),
        })
        metadata["model_card"] = md.uri_value(publish_card(reg, name, version)["html"])
        for column, png in _drift_plots(report, profile, production_data).items():
            metadata[f"plot/{column}"] = md.png_markdown(column, png)
        yield dg.Output(report, metadata=metadata)
        yield dg.AssetCheckResult(
            check_name="no_drift",
            passed=not report.dataset_drifted,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"{report.share_drifted:.0%} of features drifted: "
            + (", ".join(report.drifted_columns()) or "none"),
            metadata={"share_drifted": report.share_drifted},
        )

    monitor_job = dg.define_asset_job(
        f"{name}_monitor_job",
        selection=dg.AssetSelection.assets(production_key, drift_key),
        partitions_def=partitions_def,
        tags={"pipeline": name},
        description="Read a production batch and measure its drift against the champion.",
    )

    @dg.sensor(
        name=f"{name}_drift_sensor",
        job=retrain_job,
        minimum_interval_seconds=15,
        default_status=sensor_status,
        description=f"Requests {name}_retrain_job when a drift report says the data drifted, "
        f"at most once per {monitoring.retrain.cooldown_hours} h.",
    )
    def drift_sensor(context: dg.SensorEvaluationContext):
        cursor = RetrainCursor.from_json(context.cursor)
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
        decision = decide_retrain(
            events, cursor, now=time.time(), cooldown_hours=monitoring.retrain.cooldown_hours,
            on_drift=monitoring.retrain.on_drift,
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

    sensors = [drift_sensor]
    schedules = []
    if from_files:

        @dg.sensor(
            name=f"{name}_landing_sensor",
            job=monitor_job,
            minimum_interval_seconds=15,
            default_status=sensor_status,
            description=f"Adds a production_data partition for each new file at {source.path} and "
            "requests its drift report.",
        )
        def landing_sensor(context: dg.SensorEvaluationContext):
            seen: dict[str, float] = json.loads(context.cursor) if context.cursor else {}
            try:
                files = resolve_paths(source.path, base_dir, Settings.from_env().variables)
            except ValueError as exc:
                return dg.SkipReason(str(exc))
            new = {}
            for path in files:
                key, mtime = Path(path).name, os.path.getmtime(path)
                if seen.get(key) != mtime:
                    new[key] = mtime
            if not new:
                return dg.SensorResult(skip_reason=dg.SkipReason(f"no new files at {source.path}"),
                                       cursor=json.dumps(seen))
            existing = set(context.instance.get_dynamic_partitions(partitions_def.name))
            return dg.SensorResult(
                run_requests=[
                    dg.RunRequest(partition_key=key, run_key=f"{key}@{mtime}") for key, mtime in sorted(new.items())
                ],
                dynamic_partitions_requests=[
                    partitions_def.build_add_request(sorted(k for k in new if k not in existing))
                ],
                cursor=json.dumps({**seen, **new}, sort_keys=True),
            )

        sensors.append(landing_sensor)
    else:

        @dg.schedule(
            name=f"{name}_drift_check_schedule",
            job=monitor_job,
            cron_schedule=monitoring.check_cron or "0 * * * *",
            default_status=schedule_status,
            description="Measures drift of today's served predictions.",
        )
        def drift_check_schedule(context: dg.ScheduleEvaluationContext):
            day = context.scheduled_execution_time.astimezone(UTC).strftime("%Y-%m-%d")
            stamp = context.scheduled_execution_time.strftime("%Y%m%dT%H%M")
            return dg.RunRequest(partition_key=day, run_key=f"{day}@{stamp}")

        schedules.append(drift_check_schedule)

    if monitoring.retrain.cron:
        schedules.append(
            dg.ScheduleDefinition(
                name=f"{name}_retrain_schedule",
                job=retrain_job,
                cron_schedule=monitoring.retrain.cron,
                default_status=schedule_status,
                tags={"ml_pipelines/trigger": "schedule"},
            )
        )
    return dg.Definitions(
        assets=[production_data, drift_report],
        jobs=[monitor_job],
        sensors=sensors,
        schedules=schedules,
    )


def land_batch(spec: PipelineSpec, *, drift: float, rows: int, seed: int, base_dir: Path | None = None) -> Path:
    """Write one production batch from the spec's synthetic generator into its landing folder."""
    source = spec.monitoring.production_data
    if not isinstance(source, FileSource):
        raise ValueError(f"{spec.name}: monitoring.production_data is not a landing folder (csv/parquet)")
    from ml_pipelines.core.sources import expand_variables

    if spec.source.kind != "synthetic":
        raise ValueError(f"{spec.name}: only synthetic sources can generate batches")
    pattern = Path(expand_variables(source.path, Settings.from_env().variables))
    if not pattern.is_absolute() and base_dir is not None:
        pattern = base_dir / pattern
    folder = pattern.parent
    folder.mkdir(parents=True, exist_ok=True)
    params = {**spec.source.params, "rows": rows, "seed": seed, "drift": drift}
    batch = load_source(spec.source.model_copy(update={"params": params})).frame.drop(columns=[spec.target])
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    path = folder / f"batch-{stamp}-drift{drift:g}.{source.kind}"
    tmp = folder / f".{path.name}.tmp"
    if source.kind == "csv":
        batch.to_csv(tmp, index=False)
    else:
        batch.to_parquet(tmp, index=False)
    tmp.replace(path)  # the sensor never sees a half-written file
    return path

