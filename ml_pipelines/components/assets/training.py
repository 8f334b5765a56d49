"""trained_model: the best candidate by cross-validation, refit on the training split."""

from typing import TYPE_CHECKING

import dagster as dg

from ml_pipelines.components import metadata as md
from ml_pipelines.components.policies import fail_fast_on_bad_input
from ml_pipelines.core.features import FeatureSet
from ml_pipelines.core.selection import SelectionResult, select_for_spec

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
        **ctx.stage_settings("trained_model", "training"),
    )
    @fail_fast_on_bad_input
    def trained_model(context: dg.AssetExecutionContext, features: FeatureSet) -> dg.Output[SelectionResult]:
        result = select_for_spec(spec, features, log=context.log.info)
        return dg.Output(result, metadata=md.selection_metadata(result))

    return trained_model
