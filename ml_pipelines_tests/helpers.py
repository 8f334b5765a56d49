"""Materialize a spec in process (its retrain job on a temporary or given instance,
with the local resources under a root) and read the outcome. Specs come from specs.py."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from ml_pipelines.components import build_pipeline_defs
from ml_pipelines.core.registry import ModelRegistry
from ml_pipelines.core.storage import LocalObjectStore
from ml_pipelines.definitions import apply_policies
from ml_pipelines.resources import local_resources
from ml_pipelines.spec import PipelineSpec


@dataclass
class Materialized:
    result: dg.ExecuteInProcessResult
    registry: ModelRegistry

    @property
    def success(self) -> bool:
        return self.result.success

    def check(self, name: str) -> dg.AssetCheckEvaluation:
        found = [e for e in self.result.get_asset_check_evaluations() if e.check_name == name]
        assert found, f"check {name} did not run"
        return found[-1]

    def materialized(self) -> set[str]:
        return {e.asset_key.path[-1] for e in self.result.get_asset_materialization_events()}

    def step_errors(self) -> list[str]:
        return [e.event_specific_data.error.message for e in self.result.all_events if e.is_step_failure]


def registry_at(root: Path) -> ModelRegistry:
    return ModelRegistry(LocalObjectStore(root / "registry"))


def materialize(
    spec: PipelineSpec, root: Path, instance: dg.DagsterInstance | None = None, base_dir: Path | None = None
) -> Materialized:
    """Run the pipeline's retrain job in process against the local resources under root, with the
    policies definitions.py applies (owners, code version)."""
    defs = dg.Definitions.merge(
        apply_policies(build_pipeline_defs(spec, base_dir=base_dir)), dg.Definitions(resources=local_resources(root))
    )
    job = defs.resolve_job_def(f"{spec.name}_retrain_job")
    if instance is None:
        with dg.instance_for_test() as temp_instance:
            result = job.execute_in_process(instance=temp_instance, raise_on_error=False)
    else:
        result = job.execute_in_process(instance=instance, raise_on_error=False)
    return Materialized(result, registry_at(root))


def bentoml_models(bentoml_home: Path):
    """The model store of one BentoML home, in this process (BentoML's public API reads BENTOML_HOME
    once per process, and these tests check several homes). The product uses public APIs only;
    this reads the store back for assertions, so it may use BentoML's own ModelStore."""
    from bentoml._internal.models import ModelStore

    return ModelStore(bentoml_home / "models")
