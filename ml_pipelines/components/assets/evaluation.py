"""evaluation: holdout metrics for the candidate and the champion, and the promotion gate."""

from typing import TYPE_CHECKING

import dagster as dg

from ml_pipelines.components import metadata as md
from ml_pipelines.components.policies import fail_fast_on_bad_input
from ml_pipelines.core.champion import load_champion
from ml_pipelines.core.evaluation import Evaluation, evaluate_for_spec
from ml_pipelines.core.features import FeatureSet
from ml_pipelines.core.gate import gate_for
from ml_pipelines.core.plots import evaluation_plots
from ml_pipelines.core.selection import SelectionResult
from ml_pipelines.resources import RegistryResource, WorkdirResource
from ml_pipelines.spec import trusted_roots

if TYPE_CHECKING:
    from ml_pipelines.components.factory import PipelineContext


def evaluation_asset(ctx: "PipelineContext") -> dg.AssetsDefinition:
    spec = ctx.spec

    @dg.asset(
        key=ctx.key("evaluation"),
        ins={"trained_model": dg.AssetIn(ctx.key("trained_model")), "features": dg.AssetIn(ctx.key("features"))},
        description=ctx.describe(
            "Holdout metrics with bootstrap 95% intervals, per-slice metrics, permutation "
            "importance, and the same metrics for the current champion on the same rows."
        ),
        kinds={"sklearn"},
        **ctx.stage_settings("evaluation", "evaluation"),
    )
    @fail_fast_on_bad_input
    def evaluation(
        context: dg.AssetExecutionContext,
        trained_model: SelectionResult,
        features: FeatureSet,
        registry: RegistryResource,
        workdir: WorkdirResource,
    ) -> dg.Output[Evaluation]:
        champion = load_champion(registry.registry(), ctx.name, trusted_roots(spec))
        result = evaluate_for_spec(spec, trained_model.model, features, champion)
        result.plots = evaluation_plots(result, spec.task, spec.gate_metric)
        plot_dir = workdir.path(ctx.name, "evaluation", context.run_id)
        for plot, png in result.plots.items():
            (plot_dir / f"{plot}.png").write_bytes(png)
        return dg.Output(result, metadata=md.evaluation_metadata(result, spec.gate_metric))

    return evaluation


def meets_floor_check(ctx: "PipelineContext") -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=ctx.key("evaluation"),
        name="meets_floor",
        blocking=True,
        description="The candidate meets the spec's floor (evaluation.gate.min). Packaging runs only when it "
        "passes: nothing that fails the floor reaches the registry.",
    )
    def meets_floor(evaluation: Evaluation) -> dg.AssetCheckResult:
        decision = gate_for(ctx.spec, evaluation)
        return dg.AssetCheckResult(
            passed=decision.meets_floor,
            severity=dg.AssetCheckSeverity.ERROR,
            description=decision.reasons[0] if ctx.spec.evaluation.gate.min is not None else "the spec sets no floor",
            metadata=md.gate_metadata(decision),
        )

    return meets_floor


def beats_champion_check(ctx: "PipelineContext") -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=ctx.key("evaluation"),
        name="beats_champion",
        description="Promotion gate: on the same holdout rows, by a paired bootstrap at the gate's confidence, the "
        "candidate is not worse than the current champion by more than max_regression. Pass: it becomes "
        "champion. Fail (with the floor met): it is registered as the challenger and the champion stays.",
    )
    def beats_champion(evaluation: Evaluation) -> dg.AssetCheckResult:
        decision = gate_for(ctx.spec, evaluation)
        return dg.AssetCheckResult(
            passed=decision.passed,
            severity=dg.AssetCheckSeverity.WARN,
            description=decision.explain(),
            metadata=md.gate_metadata(decision),
        )

    return beats_champion
