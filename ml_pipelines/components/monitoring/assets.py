"""production_data (landed batches or the serving prediction log) and drift_report
(per-feature drift against the champion's reference profile, with the `no_drift` check)."""

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
import pandas as pd

from ml_pipelines.components import metadata as md
from ml_pipelines.components.freshness import freshness_policy
from ml_pipelines.components.policies import fail_fast_on_bad_input
from ml_pipelines.core.champion import champion_profile
from ml_pipelines.core.drift import DriftReport
from ml_pipelines.core.errors import SourceError
from ml_pipelines.core.model_card import publish_card
from ml_pipelines.core.monitoring import drift_against
from ml_pipelines.core.plots import drift_plots
from ml_pipelines.core.prediction_log import read_prediction_log
from ml_pipelines.core.sources import read_file, resolve_paths
from ml_pipelines.resources import PredictionLogResource, RegistryResource
from ml_pipelines.settings import Settings
from ml_pipelines.spec import FileSource, trusted_roots

if TYPE_CHECKING:
    from ml_pipelines.components.factory import PipelineContext

DRIFT_CHECK = "no_drift"


def production_partitions(ctx: "PipelineContext") -> dg.PartitionsDefinition:
    """csv/parquet: one dynamic partition per landed file; prediction_log: one per day."""
    source = ctx.spec.monitoring.production_data
    if isinstance(source, FileSource):
        return dg.DynamicPartitionsDefinition(name=f"{ctx.name}_production_batches")
    return dg.DailyPartitionsDefinition(start_date=source.start_date.isoformat(), end_offset=1)


def production_data_asset(ctx: "PipelineContext", partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    name, source = ctx.name, ctx.spec.monitoring.production_data
    from_files = isinstance(source, FileSource)

    @dg.asset(
        key=ctx.key("production_data"),
        partitions_def=partitions_def,
        description=ctx.describe(
            f"Production batches landed at {source.path}, one partition per file."
            if from_files
            else "The serving audit trail (every prediction's input), one partition per day."
        ),
        kinds={"pandas"},
        freshness_policy=freshness_policy(ctx, "production_data"),
        **ctx.shared_settings("monitoring"),
    )
    @fail_fast_on_bad_input
    def production_data(
        context: dg.AssetExecutionContext, prediction_log: PredictionLogResource
    ) -> dg.Output[pd.DataFrame]:
        key = context.partition_key
        if from_files:
            paths = resolve_paths(source.path, ctx.base_dir, Settings.from_env().variables)
            matches = [p for p in paths if Path(p).name == key]
            if not matches:
                raise SourceError(f"{name}: landed file {key!r} no longer matches {source.path}")
            frame, origin = read_file(source.kind, matches[0], source.read_options), matches[0]
        else:
            frame = read_prediction_log(prediction_log.path, name, key)
            origin = str(prediction_log.path / name / key)
        return dg.Output(frame, metadata={"origin": origin, **md.frame_metadata(frame)})

    return production_data


def drift_metadata(report: DriftReport, version: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "champion": version,
        "dataset_drifted": report.dataset_drifted,
        "share_drifted": md.number(report.share_drifted),
        "share_threshold": md.number(report.share_threshold),
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
        metadata["prediction_drift_value"] = md.number(report.prediction.value)
    return metadata


def drift_report_asset(ctx: "PipelineContext", partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    name, spec = ctx.name, ctx.spec
    drift = spec.monitoring.drift
    key = ctx.key("drift_report")

    @dg.asset(
        key=key,
        partitions_def=partitions_def,
        ins={"production_data": dg.AssetIn(ctx.key("production_data"))},
        # the packaged model it judges: an edge in the lineage graph, not an input (the report judges
        # the registry's champion, which the newest model_package may not be)
        deps=[ctx.key("model_package")],
        description=ctx.describe(
            "Per-feature drift of a production batch against the champion's reference profile "
            f"(method {drift.method}; the batch counts as drifted when at least "
            f"{drift.share:.0%} of features drift), plus drift of the champion's predictions."
        ),
        kinds={"pandas"},
        check_specs=[
            dg.AssetCheckSpec(
                DRIFT_CHECK,
                asset=key,
                description=f"Fewer than {drift.share:.0%} of the watched features drift against the "
                "champion's training data. A failure warns; the drift sensor requests retraining.",
            )
        ],
        **ctx.shared_settings("monitoring"),
    )
    @fail_fast_on_bad_input
    def drift_report(context: dg.AssetExecutionContext, production_data: pd.DataFrame, registry: RegistryResource):
        reg = registry.registry()
        version, profile = champion_profile(reg, name)
        model = reg.load_model(name, version, trusted_roots(spec))
        report = drift_against(profile, production_data, drift, model, spec.task)
        metadata = drift_metadata(report, version)
        reg.record_drift(name, version, {
            "time": datetime.now(UTC).isoformat(), "partition": context.partition_key, "run_id": context.run_id,
            "share_drifted": report.share_drifted, "dataset_drifted": report.dataset_drifted,
            "drifted_columns": report.drifted_columns(),
        })
        metadata["model_card"] = md.card_link(reg, name, version, "html", publish_card(reg, name, version)["html"])
        for column, png in drift_plots(report, profile, production_data).items():
            metadata[f"plot/{column}"] = md.png_markdown(column, png)
        yield dg.Output(report, metadata=metadata)
        yield dg.AssetCheckResult(
            check_name=DRIFT_CHECK,
            passed=not report.dataset_drifted,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"{report.share_drifted:.0%} of features drifted: "
            + (", ".join(report.drifted_columns()) or "none"),
            metadata={"share_drifted": report.share_drifted},
        )

    return drift_report


def monitor_job(ctx: "PipelineContext", partitions_def: dg.PartitionsDefinition):
    return dg.define_asset_job(
        f"{ctx.name}_monitor_job",
        selection=dg.AssetSelection.assets(ctx.key("production_data"), ctx.key("drift_report")),
        partitions_def=partitions_def,
        tags={"pipeline": ctx.name},
        description="Read a production batch and measure its drift against the champion.",
    )
