"""monitoring.freshness as Dagster freshness policies (the current API; it supersedes
freshness checks and needs no sensor): Dagster's freshness daemon (`dagster dev` and the
daemon start it) marks production_data that stopped arriving, or a model_package that is
too old, as failing its freshness policy, and the UI shows it on the asset."""

from typing import TYPE_CHECKING, Literal

import dagster as dg

from ml_pipelines.durations import parse_duration

if TYPE_CHECKING:
    from ml_pipelines.components.factory import PipelineContext


def freshness_policy(ctx: "PipelineContext", field: Literal["production_data", "model"]) -> dg.FreshnessPolicy | None:
    """The policy for monitoring.freshness.<field>: fail when the asset's newest
    materialization (of any partition) is older than the duration."""
    duration = getattr(ctx.spec.monitoring.freshness, field)
    if duration is None:
        return None
    return dg.FreshnessPolicy.time_window(fail_window=parse_duration(duration))
