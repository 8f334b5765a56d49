"""build_pipeline_defs(spec): one spec in, the whole Dagster chain out.

raw_data -> validated_data -> features -> trained_model -> evaluation -> model_package
Each stage lives in components/assets/<stage>.py and is a thin wrapper around
ml_pipelines.core; monitoring (production data, drift, sensors) in
components/monitoring/. This module holds only the per-pipeline context they
share and the wiring: which assets, checks and jobs a spec produces.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from ml_pipelines.components.assets import evaluation, features, ingestion, packaging, training, validation
from ml_pipelines.components.monitoring import build_monitoring_defs
from ml_pipelines.components.policies import RETRY_POLICY, run_tags, stage_op_tags, stage_pool
from ml_pipelines.spec import PipelineSpec

STAGES = ("raw_data", "validated_data", "features", "trained_model", "evaluation", "model_package")
# definition metadata every asset carries; definitions.py turns it into the code version
SPEC_HASH_KEY = "ml_pipelines/spec_hash"


@dataclass(frozen=True)
class PipelineContext:
    """What every stage of one pipeline shares. Built once per spec; reads no data."""

    spec: PipelineSpec
    base_dir: Path | None
    partitions_def: dg.PartitionsDefinition | None

    @classmethod
    def for_spec(cls, spec: PipelineSpec, base_dir: Path | None = None) -> PipelineContext:
        partitions = spec.source.partitions
        partitions_def = (
            dg.DailyPartitionsDefinition(
                start_date=partitions.start_date.isoformat(),
                end_date=partitions.end_date.isoformat() if partitions.end_date else None,
            )
            if partitions
            else None
        )
        return cls(spec, base_dir, partitions_def)

    @property
    def name(self) -> str:
        return self.spec.name

    def key(self, asset: str) -> dg.AssetKey:
        return dg.AssetKey([self.name, asset])

    def describe(self, what: str) -> str:
        """An asset's description: what the stage does first (the UI's asset list shows only the
        start), then the pipeline's description."""
        return f"{what}\n\n{self.spec.description or f'ML pipeline {self.name}'}"

    def shared_settings(self, stage: str) -> dict[str, Any]:
        """What every asset of the pipeline carries, monitoring included: group, owners,
        tags, the spec hash (definitions.py derives the code version from it) and the
        retry policy (Dagster can attach one only where an asset is defined)."""
        return dict(
            group_name=self.name,
            owners=list(self.spec.owners),
            tags={"stage": stage, "pipeline": self.name},
            metadata={SPEC_HASH_KEY: self.spec.spec_hash()},
            retry_policy=RETRY_POLICY,
        )

    def stage_settings(self, asset: str, stage: str) -> dict[str, Any]:
        """A chain asset's settings: the shared ones plus its Kubernetes step-pod resources
        and its concurrency pool."""
        return dict(
            op_tags=stage_op_tags(self.spec, asset),
            pool=stage_pool(self.spec, asset),
            **self.shared_settings(stage),
        )


def build_pipeline_defs(spec: PipelineSpec, *, base_dir: Path | None = None) -> dg.Definitions:
    """All Dagster definitions for one pipeline spec. Reads no data."""
    ctx = PipelineContext.for_spec(spec, base_dir)
    assets = [
        ingestion.raw_data_asset(ctx),
        validation.validated_data_asset(ctx),
        features.features_asset(ctx),
        training.trained_model_asset(ctx),
        evaluation.evaluation_asset(ctx),
        packaging.model_package_asset(ctx),
    ]
    checks = [evaluation.meets_floor_check(ctx), evaluation.beats_champion_check(ctx)]
    if ctx.partitions_def is None:
        # a partitioned raw_data runs the suite inside its own step (ingestion.py says why)
        checks.insert(0, ingestion.expectation_suite_check(ctx))
    jobs = chain_jobs(ctx)
    definitions = dg.Definitions(assets=assets, asset_checks=checks, jobs=jobs)
    if spec.monitoring.production_data is None:
        return definitions
    return dg.Definitions.merge(definitions, build_monitoring_defs(ctx, retrain_job=jobs[0]))


def chain_jobs(ctx: PipelineContext) -> list:
    """`<name>_retrain_job` (the first) and, for a partitioned source, `<name>_ingest_job`; their run
    tags (policies.run_tags) carry the team and the stages' summed max_runtime."""
    name = ctx.name
    partitioned = ctx.partitions_def is not None
    retrained = STAGES[2:] if partitioned else STAGES
    jobs = [
        dg.define_asset_job(
            f"{name}_retrain_job",
            selection=dg.AssetSelection.assets(*[ctx.key(s) for s in retrained]),
            description=f"Re-materialize {name} from {'features' if partitioned else 'raw_data'} to model_package; "
            "the promotion gate decides whether the new version becomes champion.",
            tags=run_tags(ctx.spec, retrained),
            op_retry_policy=RETRY_POLICY,
        )
    ]
    if partitioned:
        jobs.append(
            dg.define_asset_job(
                f"{name}_ingest_job",
                selection=dg.AssetSelection.assets(ctx.key("raw_data"), ctx.key("validated_data")),
                partitions_def=ctx.partitions_def,
                tags=run_tags(ctx.spec, ("raw_data", "validated_data")),
                op_retry_policy=RETRY_POLICY,
            )
        )
    return jobs
