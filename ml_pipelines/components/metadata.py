"""Dagster metadata for each stage: row counts, column schemas, lineage and
markdown tables that the UI renders."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import dagster as dg
import pandas as pd

from ml_pipelines.core.evaluation import Evaluation
from ml_pipelines.core.experiments import DROPPED, LOST, ExperimentRecord
from ml_pipelines.core.features import FeatureSet
from ml_pipelines.core.gate import GateDecision
from ml_pipelines.core.registry import ModelRegistry
from ml_pipelines.core.reports import local_report_url, object_url
from ml_pipelines.core.retrain_data import Provenance
from ml_pipelines.core.selection import SelectionResult
from ml_pipelines.core.validation import ValidationReport
from ml_pipelines.settings import Settings


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> dg.MetadataValue:
    if not rows:
        return dg.MetadataValue.md("_none_")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return dg.MetadataValue.md("\n".join(lines))


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value).replace("|", "\\|")


def number(value: float | int | None) -> dg.MetadataValue:
    """A numeric entry, which Dagster's Plots tab charts across materializations; null when unknown
    (a text like "unknown" would turn the entry's type and break the chart)."""
    if value is None:
        return dg.MetadataValue.null()
    if isinstance(value, int) and not isinstance(value, bool):
        return dg.MetadataValue.int(value)
    return dg.MetadataValue.float(float(value))


def uri_value(uri: str) -> dg.MetadataValue:
    """A link the UI can open: URLs as URLs, local files as paths."""
    return dg.MetadataValue.url(uri) if "://" in uri else dg.MetadataValue.path(uri)


def report_link(path: str) -> dg.MetadataValue:
    """A local report (file path or file:// URL) as a link to the report server (`ml-pipelines
    reports`), which a browser opens; a file outside the platform home stays a path."""
    settings = Settings.from_env()
    url = local_report_url(path, home=settings.home, reports_url=settings.reports_url)
    return dg.MetadataValue.url(url) if url else uri_value(path)


def object_link(registry: ModelRegistry, key: str) -> dg.MetadataValue:
    """A report stored in the registry's store as a browser link (presigned in S3, the report
    server's URL for local files); what cannot be linked stays its URI."""
    settings = Settings.from_env()
    url = object_url(registry.store, key, home=settings.home, reports_url=settings.reports_url)
    return dg.MetadataValue.url(url) if url else uri_value(registry.store.uri(key))


def card_link(registry: ModelRegistry, pipeline: str, version: str, suffix: str, uri: str) -> dg.MetadataValue:
    """A version's model card as a browser link: presigned in S3 (prod), the report server's URL
    for local files; what cannot be linked stays a path."""
    settings = Settings.from_env()
    url = object_url(registry.store, registry.card_key(pipeline, version, suffix), home=settings.home,
                     reports_url=settings.reports_url)
    return dg.MetadataValue.url(url) if url else uri_value(uri)


def png_markdown(title: str, png: bytes) -> dg.MetadataValue:
    """An inline PNG the UI renders as an image."""
    return dg.MetadataValue.md(f"![{title}](data:image/png;base64,{base64.b64encode(png).decode()})")


def _prime_dagster_records() -> None:
    """Dagster's @record classes compile their checked constructor on first use, and the compiled
    function keeps the first caller's local variables for good (dagster_shared's
    EvalContext.capture_from_frame): first built inside table_schema(frame), a step's whole
    DataFrame (or FeatureSet) stayed in memory for the rest of the process. Built here once,
    at import, the first caller's locals are these few small values."""
    key = dg.AssetKey("_")
    dg.TableColumnLineage(deps_by_column={"_": [dg.TableColumnDep(asset_key=key, column_name="_")]})
    dg.TableSchema(columns=[dg.TableColumn("_", "_")])


_prime_dagster_records()


def table_schema(frame: pd.DataFrame) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(str(c), str(frame[c].dtype)) for c in frame.columns])


def provenance_metadata(provenance: Provenance) -> dict[str, Any]:
    """Where training rows came from, when a retrain window added production batches."""
    if not provenance.batches:
        return {}
    return {
        "source_rows": provenance.source_rows,
        "production_rows": provenance.production_rows,
        "training_batches": markdown_table(["batch", "rows"], [[b.batch, b.rows] for b in provenance.batches]),
    }


def frame_metadata(frame: pd.DataFrame) -> dict[str, Any]:
    return {"dagster/row_count": len(frame), "dagster/column_schema": table_schema(frame)}


def validation_metadata(report: ValidationReport, champion: str | None, *, registry: ModelRegistry | None = None,
                        published: str | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "expectations_evaluated": report.evaluated,
        "expectations_failed": len(report.failures),
        "rows": report.row_count,
        "reference": f"champion {champion}" if champion else "this data (no champion yet)",
        "failures": markdown_table(
            ["expectation", "column", "unexpected", "detail"],
            [[f.expectation, f.column or "<table>", f.unexpected_count, f.detail] for f in report.failures],
        ),
    }
    for failure in report.failures:
        if failure.column and failure.unexpected_count is not None:
            metadata[f"unexpected/{failure.column}/{failure.expectation.removeprefix('expect_column_values_')}"] = (
                failure.unexpected_count
            )
    if published and registry is not None:  # prod: the page in the bucket, presigned
        metadata["data_docs"] = object_link(registry, published)
        metadata["data_docs_object"] = registry.store.uri(published)
    elif report.docs_path:
        metadata["data_docs"] = report_link(report.docs_path)
    return metadata


def features_metadata(features: FeatureSet, raw_key: dg.AssetKey) -> dict[str, Any]:
    columns = features.columns
    lineage = dg.TableColumnLineage(
        deps_by_column={
            feature: [dg.TableColumnDep(asset_key=raw_key, column_name=c) for c in sources]
            for feature, sources in columns.lineage().items()
        }
    )
    schema = dg.TableSchema(
        columns=[dg.TableColumn(c, "numeric") for c in columns.numeric]
        + [dg.TableColumn(c, "categorical") for c in columns.categorical]
    )
    return {
        "train_rows": len(features.train),
        "test_rows": len(features.test),
        "dagster/row_count": len(features.train) + len(features.test),
        "numeric": dg.MetadataValue.json(list(columns.numeric)),
        "categorical": dg.MetadataValue.json(list(columns.categorical)),
        "model_inputs": dg.MetadataValue.json(list(columns.inputs)),
        "stratified_split": features.stratified,
        "data_hash": features.data_version,
        "partitions": dg.MetadataValue.json(list(features.partitions)),
        "holdout": features.holdout,
        **(provenance_metadata(features.provenance) if features.provenance else {}),
        "dagster/column_schema": schema,
        "dagster/column_lineage": lineage,
    }


def selection_metadata(result: SelectionResult) -> dict[str, Any]:
    best = result.best
    return {
        "selected": best.label,
        "framework": best.framework,
        f"cv_{result.metric}_mean": number(best.mean),
        f"cv_{result.metric}_std": number(best.std),
        "cv_folds": result.cv_folds,
        "cv_rows": result.cv_rows,
        "candidates": dg.MetadataValue.md(result.table_markdown()),
        "dropped": len([r for r in result.results if r.dropped]),
        "refit_seconds": number(result.refit_seconds),
        # numeric, under the same names whatever the metric, so the Plots tab charts them across runs
        "best_cv_score": number(best.mean),
        "best_cv_std": number(best.std),
        "best_fit_seconds": number(best.fit_seconds),
        "best_latency_ms_per_row": number(best.latency_ms_per_row),
        "best_size_mb": number(best.size_mb),
        "candidates_evaluated": number(len(result.results)),
        "candidates_failed": number(sum(r.failed for r in result.results)),
    }


def experiment_metadata(record: ExperimentRecord, created: bool) -> dict[str, Any]:
    """Where the run's experiment record is, and how its candidates ended (`ml-pipelines experiments`)."""
    return {
        "experiment_run": record.run_id,
        "experiment_record": "written by this attempt" if created else "kept: an earlier attempt of this run wrote it",
        "candidates_lost": number(record.count(LOST)),
        "candidates_dropped": number(record.count(DROPPED)),
    }


def evaluation_metadata(evaluation: Evaluation, gate_metric: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {"test_rows": number(evaluation.test_rows)}
    for name, value in evaluation.metrics.items():
        metadata[f"metric/{name}"] = number(value)
        champion = (evaluation.champion_metrics or {}).get(name)
        if champion is not None:
            metadata[f"champion_metric/{name}"] = number(champion)
    rows = []
    for name, value in evaluation.metrics.items():
        interval = evaluation.intervals.get(name)
        champion = (evaluation.champion_metrics or {}).get(name)
        rows.append(
            [name, value, interval.low if interval else None, interval.high if interval else None, champion]
        )
    metadata["metrics"] = markdown_table(["metric", "candidate", "95% low", "95% high", "champion"], rows)
    metadata["champion"] = evaluation.champion_version or "none"
    if evaluation.champion_note:
        metadata["champion_comparison"] = evaluation.champion_note
    if evaluation.slices:
        names = list(evaluation.metrics)
        metadata["slices"] = markdown_table(
            ["column", "value", "rows", *names],
            [[s.column, s.value, s.rows, *(s.metrics.get(n) for n in names)] for s in evaluation.slices],
        )
    for plot, png in evaluation.plots.items():
        metadata[f"plot/{plot}"] = png_markdown(plot, png)
    metadata["feature_importance"] = markdown_table(
        ["input", f"{gate_metric} drop", "std"], [list(r) for r in evaluation.importance]
    )
    return metadata


def gate_metadata(decision: GateDecision) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "metric": decision.metric,
        "candidate": decision.candidate,
        "max_regression": decision.max_regression,
        "reasons": dg.MetadataValue.md("\n".join(f"- {r}" for r in decision.reasons)),
    }
    if decision.minimum is not None:
        metadata["minimum"] = decision.minimum
    if decision.champion is not None:
        metadata["champion"] = decision.champion
        metadata["champion_version"] = decision.champion_version
    metadata["outcome"] = decision.outcome
    comparison = decision.comparison
    if comparison is not None:  # the paired bootstrap the decision rests on
        metadata.update({
            "paired_rows": comparison.rows,
            "loss": comparison.loss,
            "loss_interval": dg.MetadataValue.json([comparison.loss_low, comparison.loss_high]),
            "loss_bound": comparison.loss_bound,
            "confidence": comparison.confidence,
            "paired_resamples": comparison.samples,
        })
    return metadata
