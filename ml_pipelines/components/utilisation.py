"""Where capacity goes, read from the Dagster instance: the usage figures every materialization
carries (step_usage.py) as core.utilisation.UsageRecords, for `ml-pipelines usage` and the
`platform/utilisation` asset, a daily report (with a plot) that a schedule refreshes.

No `from __future__ import annotations` here: Dagster resolves the asset's Config annotation at
definition time."""

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import dagster as dg

from ml_pipelines.components import metadata as md
from ml_pipelines.components.policies import STAGE_OF_ASSET
from ml_pipelines.core.plots import utilisation_png
from ml_pipelines.core.usage import OWNERS, WALL_S
from ml_pipelines.core.utilisation import (
    SUGGESTION_COLUMNS,
    USAGE_COLUMNS,
    UsageRecord,
    UtilisationReport,
    format_cell,
    suggestion_rows,
    suggestion_rule,
    usage_rows,
    utilisation_report,
)

UTILISATION_KEY = dg.AssetKey(["platform", "utilisation"])
PAGE = 1000
MONITORING_STAGE = "monitoring"  # the assets outside the chain's stages (production data, drift, labels)


def _record(key: dg.AssetKey, entry: dg.EventLogRecord) -> UsageRecord | None:
    materialization = entry.asset_materialization
    metadata = materialization.metadata if materialization is not None else {}
    if WALL_S not in metadata:
        return None  # not measured (before usage figures existed, or ML_PIPELINES_USAGE_INTERVAL=0)
    figures = {
        name: float(value.value) for name, value in metadata.items()
        if name.startswith("usage/") and isinstance(value, (dg.FloatMetadataValue, dg.IntMetadataValue))
        and value.value is not None
    }
    owners = metadata.get(OWNERS)
    return UsageRecord(
        pipeline=key.path[0] if len(key.path) > 1 else "-",
        asset=key.path[-1],
        stage=STAGE_OF_ASSET.get(key.path[-1], MONITORING_STAGE),
        owner=str(owners.value) if owners is not None else "unknown",
        timestamp=entry.timestamp,
        run_id=entry.run_id,
        figures=figures,
    )


def usage_records(instance: dg.DagsterInstance, since: float | None = None) -> Iterator[UsageRecord]:
    """Every measured materialization in the instance, after `since` (a Unix time) when given."""
    for key in instance.get_asset_keys():
        cursor = None
        while True:
            page = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=key, after_timestamp=since), limit=PAGE, cursor=cursor
            )
            for entry in page.records:
                record = _record(key, entry)
                if record is not None:
                    yield record
            if not page.has_more:
                break
            cursor = page.cursor


def recent_records(instance: dg.DagsterInstance, window_s: float | None) -> tuple[list[UsageRecord], datetime | None]:
    """The measured steps of the last `window_s` seconds (None: all time), and when that window began."""
    since = time.time() - window_s if window_s is not None else None
    return list(usage_records(instance, since)), datetime.fromtimestamp(since, UTC) if since is not None else None


# ---------------------------------------------------------------- the platform/utilisation asset


class UtilisationConfig(dg.Config):
    window_hours: float = 24.0  # the report covers the steps materialized this long before it runs


def _totals(report: UtilisationReport) -> dict[str, dg.MetadataValue]:
    """The window's totals as numbers: the Plots tab charts them day by day."""
    total = report.total
    return {
        "steps": dg.MetadataValue.int(total.steps),
        "cpu_hours": md.number(total.cpu_hours),
        "cpu_hours_requested": md.number(total.cpu_hours_requested),
        "cpu_hours_wasted": md.number(total.cpu_hours_wasted),
        "gpu_hours": md.number(total.gpu_hours),
        "gpu_hours_requested": md.number(total.gpu_hours_requested),
        "gpu_hours_wasted": md.number(total.gpu_hours_wasted),
        "peak_rss_mib_max": md.number(total.peak_rss_mib_max),
        "memory_gib_hours_unused": md.number(total.memory_gib_hours_unused),
    }


def _formatted(rows: list[list[object]]) -> list[list[str]]:
    """Hours of a local day are small: 3 significant digits, as the command line prints them."""
    return [[format_cell(value) for value in row] for row in rows]


@dg.asset(
    key=UTILISATION_KEY,
    group_name="platform",
    kinds={"dagster"},
    description="Where capacity goes: CPU-hours, GPU-hours and peak memory of every measured step in the last "
    "day (window_hours), per stage and per pipeline, against what their Kubernetes pods requested (the waste), "
    "and the `resources.<stage>` values the measured peaks suggest. `ml-pipelines usage` prints the same.",
)
def utilisation(context: dg.AssetExecutionContext, config: UtilisationConfig) -> dg.MaterializeResult:
    records, since = recent_records(context.instance, config.window_hours * 3600)
    by_stage = utilisation_report(records, "stage", since)
    by_pipeline = utilisation_report(records, "pipeline", since)
    context.log.info(f"{by_stage.total.steps} measured steps in the last {config.window_hours:g} h")
    metadata: dict[str, object] = {
        **_totals(by_stage),
        "by_stage": md.markdown_table(["stage", *USAGE_COLUMNS], _formatted(usage_rows(by_stage))),
        "by_pipeline": md.markdown_table(["pipeline", *USAGE_COLUMNS], _formatted(usage_rows(by_pipeline))),
        "suggested_resources": md.markdown_table(SUGGESTION_COLUMNS, suggestion_rows(by_stage)),
        "suggestion_rule": suggestion_rule(),
    }
    if by_stage.groups:
        metadata["plot"] = md.png_markdown("CPU-hours and memory per stage", utilisation_png(by_stage))
    return dg.MaterializeResult(metadata=metadata)


utilisation_job = dg.define_asset_job(
    "platform_utilisation_job", selection=dg.AssetSelection.assets(UTILISATION_KEY),
    description="Refresh platform/utilisation: the last day's step usage against the pods' requests.",
)
utilisation_schedule = dg.ScheduleDefinition(
    name="platform_utilisation_daily", job=utilisation_job, cron_schedule="0 6 * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every day at 06:00: the previous 24 hours' utilisation report.",
)


def utilisation_defs() -> dg.Definitions:
    return dg.Definitions(assets=[utilisation], jobs=[utilisation_job], schedules=[utilisation_schedule])
