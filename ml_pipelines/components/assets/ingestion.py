"""raw_data: the source as ingested, and the Great Expectations suite that gates it."""

from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import pandas as pd

from ml_pipelines.components import metadata as md
from ml_pipelines.components.policies import fail_fast_on_bad_input
from ml_pipelines.core.champion import champion_schema
from ml_pipelines.core.data_docs import page_in_site, publish_validation
from ml_pipelines.core.features import check_required_columns
from ml_pipelines.core.hashing import frame_hash
from ml_pipelines.core.labels import LabelledBatches
from ml_pipelines.core.retrain_data import join_window, provenance_of, window_batches
from ml_pipelines.core.sources import coerce_declared_types, describe_source, load_source
from ml_pipelines.core.storage import S3ObjectStore
from ml_pipelines.core.validation import ValidationReport, run_suite, spec_schema
from ml_pipelines.resources import RegistryResource, WorkdirResource
from ml_pipelines.settings import Settings

if TYPE_CHECKING:
    from ml_pipelines.components.factory import PipelineContext

CHECK = "matches_expectation_suite"


def _blocking(ctx: "PipelineContext") -> bool:
    return ctx.spec.data_schema.on_failure == "block"


def _check_description(ctx: "PipelineContext") -> str:
    return (
        "The raw data meets the Great Expectations suite built from the spec's schema "
        f"(on failure: {ctx.spec.data_schema.on_failure})."
    )


def suite_result(
    ctx: "PipelineContext", frame: pd.DataFrame, registry: RegistryResource, workdir: WorkdirResource,
    run_id: str, partition: str | None = None,
) -> dg.AssetCheckResult:
    """Run the suite (rules resolved against the champion's schema) in the pipeline's persistent
    GX context, named after the Dagster run, and write its Data Docs."""
    reference, champion = champion_schema(registry.registry(), ctx.name)
    schema = spec_schema(ctx.spec, frame, reference)
    suite_name = f"{ctx.name}_raw_data" + (f"_{partition}" if partition else "")
    report = run_suite(frame, schema, suite_name=suite_name, project_dir=workdir.path(ctx.name), run_name=run_id)
    return dg.AssetCheckResult(
        check_name=CHECK,
        passed=report.success,
        severity=dg.AssetCheckSeverity.ERROR if _blocking(ctx) else dg.AssetCheckSeverity.WARN,
        description=None if report.success else "; ".join(report.summary_lines())[:1000],
        metadata=md.validation_metadata(report, champion, registry=registry.registry(),
                                        published=_publish_docs(ctx, report, registry)),
    )


def _publish_docs(ctx: "PipelineContext", report: ValidationReport, registry: RegistryResource) -> str | None:
    """In the prod profile (the registry in S3, the step's disk gone with its pod), the validation's
    Data Docs page goes to the bucket under the pipeline's prefix; returns its key there."""
    store = registry.registry().store
    if not (isinstance(store, S3ObjectStore) and report.docs_path and report.docs_site):
        return None
    site = Path(report.docs_site)
    return publish_validation(store, ctx.name, site, page_in_site(report.docs_path, site))


def with_window(ctx: "PipelineContext", source: pd.DataFrame, registry: RegistryResource) -> pd.DataFrame:
    """The source plus the newest labelled production batches (monitoring.retrain.window)."""
    window = ctx.spec.monitoring.retrain.window
    if window is None:
        return source
    store = LabelledBatches(registry.registry().store, ctx.name)
    batches = window_batches(store, window.batches)
    return join_window(source, batches, id_columns=ctx.spec.monitoring.production_id_columns() or [])


def raw_data_asset(ctx: "PipelineContext") -> dg.AssetsDefinition:
    spec = ctx.spec
    key = ctx.key("raw_data")
    partitioned = ctx.partitions_def is not None

    # A partitioned raw_data runs the suite inside its own step (a check spec), so each
    # run validates exactly its partition: a separate check would load every partition.
    @dg.asset(
        key=key,
        description=ctx.describe(
            f"Data as ingested from {describe_source(spec.source)}"
            + (f", plus the newest {spec.monitoring.retrain.window.batches} labelled production batches."
               if spec.monitoring.retrain.window else ".")
        ),
        deps=[ctx.key("labels")] if spec.monitoring.retrain.window else None,
        kinds={"pandas"},
        partitions_def=ctx.partitions_def,
        check_specs=(
            [dg.AssetCheckSpec(CHECK, asset=key, blocking=_blocking(ctx), description=_check_description(ctx))]
            if partitioned
            else None
        ),
        **ctx.stage_settings("raw_data", "ingestion"),
    )
    @fail_fast_on_bad_input
    def raw_data(context: dg.AssetExecutionContext, registry: RegistryResource, workdir: WorkdirResource):
        partition = context.partition_key if partitioned else None
        loaded = load_source(
            spec.source, base_dir=ctx.base_dir, env=Settings.from_env().variables, partition_key=partition
        )
        frame = with_window(ctx, loaded.frame, registry)
        frame = coerce_declared_types(frame, spec.data_schema, loaded.description)
        check_required_columns(frame, spec, loaded.description)
        data_version = frame_hash(frame)
        yield dg.Output(
            frame,
            data_version=dg.DataVersion(data_version),
            metadata={
                "source": loaded.description,
                "files": dg.MetadataValue.json(list(loaded.files)),
                "data_hash": data_version,
                **md.provenance_metadata(provenance_of(frame)),
                **md.frame_metadata(frame),
            },
        )
        if partitioned:
            yield suite_result(ctx, frame, registry, workdir, context.run_id, partition)

    return raw_data


def expectation_suite_check(ctx: "PipelineContext") -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=ctx.key("raw_data"), name=CHECK, blocking=_blocking(ctx), description=_check_description(ctx)
    )
    @fail_fast_on_bad_input
    def matches_expectation_suite(
        context: dg.AssetCheckExecutionContext, raw_data: pd.DataFrame, registry: RegistryResource,
        workdir: WorkdirResource,
    ) -> dg.AssetCheckResult:
        return suite_result(ctx, raw_data, registry, workdir, context.run.run_id)

    return matches_expectation_suite
