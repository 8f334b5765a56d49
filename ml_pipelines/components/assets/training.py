"""trained_model: the best candidate by cross-validation, refit on the training split."""

from typing import TYPE_CHECKING

import dagster as dg

from ml_pipelines.components import metadata as md
from ml_pipelines.components.policies import fail_fast_on_bad_input
from ml_pipelines.core.champion import unchanged_version
from ml_pipelines.core.features import FeatureSet
from ml_pipelines.core.packaging import code_version
from ml_pipelines.core.selection import select_for_spec
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
    @fail_fast_on_bad_input
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
        result = select_for_spec(spec, features, log=context.log.info)
        yield dg.Output(result, metadata=md.selection_metadata(result))

    return trained_model
