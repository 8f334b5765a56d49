"""trained_model: the best candidate by cross-validation, refit on the training split. Every
candidate of the run (winner, losers, dropped ones with every reason) goes to the
experiment history (core.experiments), once per run: a retried step adds nothing."""

from typing import TYPE_CHECKING

import dagster as dg

from ml_pipelines.components import metadata as md
from ml_pipelines.components.policies import fail_fast_on_bad_input
from ml_pipelines.core.champion import unchanged_version
from ml_pipelines.core.errors import InputError
from ml_pipelines.core.experiments import ExperimentLog, ExperimentRecord, experiment_record
from ml_pipelines.core.features import FeatureSet
from ml_pipelines.core.packaging import code_version
from ml_pipelines.core.selection import SelectionResult, candidate_results_of, select_for_spec
from ml_pipelines.resources import RegistryResource

if TYPE_CHECKING:
    from ml_pipelines.components.factory import PipelineContext


def trained_model_asset(ctx: "PipelineContext") -> dg.AssetsDefinition:
    spec = ctx.spec
    frameworks = {m.framework for m in spec.models}

    @dg.asset(
        key=ctx.key("trained_model"),
        ins={"features": dg.AssetIn(ctx.key("features"))},
        description=ctx.describe(
            f"The best of {len(spec.models)} candidate model(s) by {spec.selection.cv_folds}-fold "
            f"cross-validated {spec.selection_metric}, refit on the whole training split."
        ),
        kinds={"sklearn", *(["pytorch"] if "torch" in frameworks else [])},
        output_required=False,  # nothing changed since a registered version: no training, no new version
        **ctx.stage_settings("trained_model", "training"),
    )
    # fitting frees blocks of many sizes: a heap that keeps them fragments (core.memory)
    @fail_fast_on_bad_input(reuse_memory=False)
    def trained_model(context: dg.AssetExecutionContext, features: FeatureSet, registry: RegistryResource):
        same = unchanged_version(
            registry.registry(), ctx.name, data_version=features.data_version, spec_hash=spec.spec_hash(),
            code_version=code_version(spec),
        )
        if same is not None:
            message = (
                f"nothing changed: {same.version} was built from the same data ({same.data_version}), spec and code; "
                "no training, no new version, no promotion"
            )
            context.log.info(f"{ctx.name}: {message}")
            yield dg.AssetObservation(asset_key=ctx.key("trained_model"), metadata={"nothing_changed": message,
                                                                                    "same_as": same.version})
            return
        try:
            result = select_for_spec(spec, features, log=context.log.info)
        except InputError as exc:  # nothing selected: the run's candidates are still history
            results = candidate_results_of(exc)
            if results:
                _record(context, ctx, registry, features, results=results, error=f"{type(exc).__name__}: {exc}")
            raise
        record, created = _record(context, ctx, registry, features, results=result.results, selection=result)
        yield dg.Output(result, metadata={**md.selection_metadata(result), **md.experiment_metadata(record, created)})

    return trained_model


def _record(
    context: dg.AssetExecutionContext, ctx: "PipelineContext", registry: RegistryResource, features: FeatureSet,
    *, results, selection: SelectionResult | None = None, error: str | None = None,
) -> tuple[ExperimentRecord, bool]:
    """Append this run's record to the experiment history, unless an earlier attempt of the same
    run did: then that record stands and nothing is written."""
    spec = ctx.spec
    record = experiment_record(
        ctx.name, context.run.run_id, metric=spec.selection_metric, cv_folds=spec.selection.cv_folds,
        results=results, selection=selection, error=error,
        limits={"max_latency_ms": spec.selection.max_latency_ms, "max_size_mb": spec.selection.max_size_mb},
        data_version=features.data_version, spec_hash=spec.spec_hash(), code_version=code_version(spec),
    )
    log = ExperimentLog(registry.registry().store)
    created = log.append(record)
    where = log.uri(ctx.name, record.run_id)
    if created:
        context.log.info(f"{ctx.name}: {len(record.candidates)} candidate(s) recorded in the experiment history: {where}")
        return record, True
    context.log.info(f"{ctx.name}: this run's experiment record exists already (an earlier attempt wrote it): {where}")
    return log.get(ctx.name, record.run_id), False
