"""The learning loop's monitoring assets: `labels` (ground truth joined to a production
batch by id, kept in the registry's store for retraining) and `production_performance`
(the champion's, and the challenger's, metrics on those labelled rows, with the
`performance_holds` check and a plot of the metric over time)."""

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
import pandas as pd

from ml_pipelines.components import metadata as md
from ml_pipelines.components.policies import fail_fast_on_bad_input
from ml_pipelines.core.champion import CHALLENGER, CHAMPION
from ml_pipelines.core.errors import SourceError
from ml_pipelines.core.labels import LabelJoin, LabelledBatches, join_labels, read_labels
from ml_pipelines.core.model_card import publish_card
from ml_pipelines.core.performance import (
    PairedComparison,
    PerformanceHistory,
    ProductionPerformance,
    paired_bootstrap,
    performance_holds,
    score,
    version_performance,
)
from ml_pipelines.core.plots import performance_png
from ml_pipelines.core.registry import ModelRegistry
from ml_pipelines.core.sources import resolve_paths
from ml_pipelines.resources import PredictionLogResource, RegistryResource
from ml_pipelines.settings import Settings
from ml_pipelines.spec import FileSource, trusted_roots

if TYPE_CHECKING:
    from ml_pipelines.components.factory import PipelineContext

PERFORMANCE_CHECK = "performance_holds"


def batch_file(ctx: "PipelineContext", key: str) -> str:
    """The landed file a production_data partition names."""
    source = ctx.spec.monitoring.production_data
    paths = resolve_paths(source.path, ctx.base_dir, Settings.from_env().variables)
    matches = [p for p in paths if Path(p).name == key]
    if not matches:
        raise SourceError(f"{ctx.name}: landed file {key!r} no longer matches {source.path}")
    return matches[0]


def landed_at(ctx: "PipelineContext", key: str) -> str:
    """When a production batch arrived: the landed file's time, or the prediction log's day."""
    if isinstance(ctx.spec.monitoring.production_data, FileSource):
        path = batch_file(ctx, key)
        seconds = os.path.getmtime(path) if "://" not in path else datetime.now(UTC).timestamp()
        return datetime.fromtimestamp(seconds, UTC).isoformat()
    return f"{key}T00:00:00+00:00"


def join_metadata(joined: LabelJoin) -> dict[str, Any]:
    return {
        "rows": joined.rows,
        "labelled_rows": joined.labelled,
        "missing_labels": joined.missing,
        "duplicate_ids": joined.duplicate_ids,
        "conflicting_ids": dg.MetadataValue.json(list(joined.conflicting_ids[:50])),
        "unmatched_labels": joined.unmatched_labels,
        "label_delay_hours": md.number(joined.label_delay_hours),
        "dagster/row_count": joined.labelled,
    }


def labels_asset(ctx: "PipelineContext", partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    spec, monitoring = ctx.spec, ctx.spec.monitoring

    @dg.asset(
        key=ctx.key("labels"),
        partitions_def=partitions_def,
        ins={"production_data": dg.AssetIn(ctx.key("production_data"))},
        description=ctx.describe(
            f"Ground truth ({monitoring.labels.kind}) joined to the production batch by "
            f"{', '.join(monitoring.production_id_columns())}: the labelled rows, kept in the registry's "
            "store so that a retrain window can learn from them. Rows without a label yet wait for the next run."
        ),
        kinds={"pandas"},
        **ctx.shared_settings("monitoring"),
    )
    @fail_fast_on_bad_input
    def labels(
        context: dg.AssetExecutionContext,
        production_data: pd.DataFrame,
        registry: RegistryResource,
        prediction_log: PredictionLogResource,
    ) -> dg.Output[pd.DataFrame]:
        batch = context.partition_key
        arrived = landed_at(ctx, batch)
        known = read_labels(
            monitoring.labels, target=spec.target, label_ids=monitoring.label_id_columns(),
            production_ids=monitoring.production_id_columns(), feedback_root=prediction_log.feedback_path,
            pipeline=ctx.name, base_dir=ctx.base_dir, variables=Settings.from_env().variables,
        )
        produced = (
            production_data["timestamp"] if "timestamp" in production_data.columns else pd.Timestamp(arrived)
        )
        joined = join_labels(
            production_data, known, id_columns=monitoring.production_id_columns(), target=spec.target,
            produced_at=produced,
        )
        LabelledBatches(registry.registry().store, ctx.name).put(
            batch, joined.frame, landed_at=arrived, updated_at=datetime.now(UTC).isoformat(), join=joined.summary()
        )
        return dg.Output(joined.frame, metadata={"landed_at": arrived, **join_metadata(joined)})

    return labels


def _load_role(reg: ModelRegistry, ctx: "PipelineContext", alias: str):
    version = reg.get_alias(ctx.name, alias)
    if version is None:
        return None, None
    return version, reg.load_model(ctx.name, version, trusted_roots(ctx.spec))


def measure(ctx: "PipelineContext", reg: ModelRegistry, rows: pd.DataFrame, batch: str, arrived: str, delay):
    """The champion (and challenger) on one batch's labelled rows, and the verdict."""
    spec = ctx.spec
    metric, samples = spec.performance_metric, max(spec.evaluation.bootstrap_samples, 50)
    version, model = _load_role(reg, ctx, CHAMPION)
    if version is None:
        raise SourceError(f"{ctx.name}: no champion yet, so there is no production performance to measure")
    scored = score(model, rows, spec.target, spec.task)
    champion = version_performance(version, CHAMPION, scored, spec.evaluation_metrics, samples=samples)
    reference = reg.get_version(ctx.name, version).metrics.get(metric)
    verdict = performance_holds(
        metric, champion.metrics[metric].value, reference, rows=len(rows),
        max_drop=spec.monitoring.performance.max_drop, min_rows=spec.monitoring.performance.min_rows,
    )
    challenger, comparison = None, None
    challenger_version, challenger_model = _load_role(reg, ctx, CHALLENGER)
    if challenger_version is not None:
        shadow = score(challenger_model, rows, spec.target, spec.task)
        challenger = version_performance(challenger_version, CHALLENGER, shadow, spec.evaluation_metrics,
                                         samples=samples)
        comparison = _compare(metric, shadow, scored, spec)
    return ProductionPerformance(batch, arrived, len(rows), delay, champion, verdict, challenger, comparison)


def _compare(metric: str, challenger, champion, spec) -> PairedComparison | None:
    try:
        return paired_bootstrap(metric, challenger, champion, samples=max(spec.evaluation.bootstrap_samples, 50),
                                confidence=spec.evaluation.gate.confidence)
    except (ValueError, SourceError):
        return None


def performance_metadata(result: ProductionPerformance, metric: str, plot: bytes) -> dict[str, Any]:
    rows = []
    for performance in filter(None, (result.champion, result.challenger)):
        for name, estimate in performance.metrics.items():
            rows.append([performance.role, performance.version, name, estimate.value, estimate.low, estimate.high])
    metadata: dict[str, Any] = {
        "champion": result.champion.version,
        "labelled_rows": result.rows,
        "landed_at": result.landed_at,
        "label_delay_hours": md.number(result.label_delay_hours),
        f"metric/{metric}": md.number(result.champion.metrics[metric].value),
        "performance_holds": result.verdict.passed,
        "performance_reason": result.verdict.reason,
        "metrics": md.markdown_table(["role", "version", "metric", "value", "95% low", "95% high"], rows),
        f"plot/{metric}_over_time": md.png_markdown(f"{metric} over time", plot),
    }
    if result.challenger is not None:
        metadata["challenger"] = result.challenger.version
        metadata[f"challenger_metric/{metric}"] = md.number(result.challenger.metrics[metric].value)
    if result.comparison is not None:
        metadata["challenger_vs_champion"] = result.comparison.describe()
    return metadata


def production_performance_asset(ctx: "PipelineContext", partitions_def: dg.PartitionsDefinition):
    spec = ctx.spec
    metric = spec.performance_metric
    performance = spec.monitoring.performance
    key = ctx.key("production_performance")

    @dg.asset(
        key=key,
        partitions_def=partitions_def,
        ins={"labels": dg.AssetIn(ctx.key("labels"))},
        description=ctx.describe(
            "The champion's metrics on the labelled rows of a production batch, with bootstrap 95% intervals, "
            "the number of labelled rows and the label delay; the challenger's beside them on the same rows."
        ),
        kinds={"pandas"},
        check_specs=[
            dg.AssetCheckSpec(
                PERFORMANCE_CHECK,
                asset=key,
                # ERROR severity shows red in the UI; not blocking, so the batch's measurement is kept
                # and the run succeeds: the performance sensor acts on the failure
                description=f"The champion's {metric} on labelled production rows is within {performance.max_drop} "
                f"of its own holdout value (once at least {performance.min_rows} rows are labelled). "
                "A failure makes the performance sensor request a retrain.",
            )
        ],
        **ctx.shared_settings("monitoring"),
    )
    @fail_fast_on_bad_input
    def production_performance(context: dg.AssetExecutionContext, labels: pd.DataFrame, registry: RegistryResource):
        reg = registry.registry()
        batch = context.partition_key
        arrived = landed_at(ctx, batch)
        delay = LabelledBatches(reg.store, ctx.name).meta(batch).join.get("label_delay_hours")
        result = measure(ctx, reg, labels, batch, arrived, delay)
        history = PerformanceHistory(reg.store, ctx.name)
        history.append(result.history_entry(metric, datetime.now(UTC).isoformat()))
        moves = [(m.moved_at, m.version) for m in reg.alias_history(ctx.name, CHAMPION) if m.version]
        plot = performance_png(metric, history.entries(), moves)
        metadata = performance_metadata(result, metric, plot)
        version = result.champion.version
        card = publish_card(reg, ctx.name, version)["html"]
        metadata["model_card"] = md.card_link(reg, ctx.name, version, "html", card)
        if result.challenger is not None:
            publish_card(reg, ctx.name, result.challenger.version)
        yield dg.Output(result, metadata=metadata)
        yield dg.AssetCheckResult(
            check_name=PERFORMANCE_CHECK,
            passed=result.verdict.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            description=result.verdict.reason,
            metadata={"rows": result.rows, "reference": result.verdict.reference or "none",
                      "drop": md.number(result.verdict.drop)},
        )

    return production_performance
