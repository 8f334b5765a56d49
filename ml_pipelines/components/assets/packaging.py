"""model_package: the blessed candidate as a registry version, BentoML model and bento."""

from typing import TYPE_CHECKING

import dagster as dg

from ml_pipelines.components import metadata as md
from ml_pipelines.components.freshness import freshness_policy
from ml_pipelines.components.policies import REASON_DETAIL_TAG, RETRAIN_REASON_TAG, fail_fast_on_bad_input
from ml_pipelines.core.evaluation import Evaluation
from ml_pipelines.core.features import FeatureSet
from ml_pipelines.core.packaging import PackagedVersion, package_version
from ml_pipelines.core.records import Trigger
from ml_pipelines.core.registry import ModelRegistry
from ml_pipelines.core.selection import SelectionResult
from ml_pipelines.resources import BentoStoreResource, RegistryResource
from ml_pipelines.settings import Settings

if TYPE_CHECKING:
    from ml_pipelines.components.factory import PipelineContext


def run_trigger(context: dg.AssetExecutionContext) -> Trigger:
    """Who started this run (a sensor, a schedule, a person) and why, from its tags."""
    tags = context.run.tags
    detail = tags.get(REASON_DETAIL_TAG, "")
    if "dagster/sensor_name" in tags:
        return Trigger(context.run_id, "sensor", tags["dagster/sensor_name"], tags.get(RETRAIN_REASON_TAG, "drift"),
                       detail)
    if "dagster/schedule_name" in tags:
        return Trigger(context.run_id, "schedule", tags["dagster/schedule_name"], "schedule", detail)
    return Trigger(context.run_id, tags.get("ml_pipelines/trigger", "manual"), None,
                   tags.get(RETRAIN_REASON_TAG, "manual"), detail)


def packaged_metadata(packaged: PackagedVersion, registry: ModelRegistry, pipeline: str) -> dict:
    return {
        "version": packaged.version,
        "bentoml_tag": packaged.bentoml_model.tag,
        "bento": packaged.bento_tag,
        "bentoml_path": dg.MetadataValue.path(packaged.bentoml_model.path),
        "alias": packaged.alias,
        f"previous_{packaged.alias}": packaged.previous_champion or "none",
        "model_card": md.card_link(registry, pipeline, packaged.version, "html", packaged.card["html"]),
        "model_card_markdown": md.card_link(registry, pipeline, packaged.version, "md", packaged.card["md"]),
        "registry": packaged.registry_uri,
        **{f"metric/{k}": md.number(v) for k, v in packaged.record.metrics.items()},
    }


def model_package_asset(ctx: "PipelineContext") -> dg.AssetsDefinition:
    @dg.asset(
        key=ctx.key("model_package"),
        ins={
            "trained_model": dg.AssetIn(ctx.key("trained_model")),
            "evaluation": dg.AssetIn(ctx.key("evaluation")),
            "features": dg.AssetIn(ctx.key("features")),
        },
        description=ctx.describe(
            "A registry version with full lineage, the same model in the BentoML store, "
            "champion when it beats the current one by the gate's rule, else the challenger."
        ),
        kinds={"bentoml"},
        freshness_policy=freshness_policy(ctx, "model"),
        **ctx.stage_settings("model_package", "packaging"),
    )
    @fail_fast_on_bad_input
    def model_package(
        context: dg.AssetExecutionContext,
        trained_model: SelectionResult,
        evaluation: Evaluation,
        features: FeatureSet,
        registry: RegistryResource,
        bento_store: BentoStoreResource,
    ) -> dg.Output[PackagedVersion]:
        # the blocking meets_floor check normally stops the run first; package_version checks the
        # floor again (GateFailed) for a package-only run, and picks champion or challenger
        reg = registry.registry()
        packaged = package_version(
            ctx.spec, trained_model, evaluation, features,
            registry=reg,
            bentoml_home=bento_store.path,
            trigger=run_trigger(context),
            export_store=bento_store.export_store(),
            child_env=Settings.from_env().child_env(),
            log=context.log.info,
        )
        return dg.Output(packaged, metadata=packaged_metadata(packaged, reg, ctx.name))

    return model_package
