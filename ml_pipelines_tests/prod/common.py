"""Shared pieces of the production-profile tests: a small credit_default spec, the
production instance file (docker/dagster.yaml) cut down to what can run here, and
the pipeline wired to the prod resources with in-process execution."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import dagster as dg
import yaml

from ml_pipelines.components import build_pipeline_defs
from ml_pipelines.spec import PipelineSpec
from ml_pipelines_tests import REPO_ROOT
from ml_pipelines_tests.specs import make_spec, small_credit_attributes

DOCKER_DIR = REPO_ROOT / "docker"
PRODUCTION_INSTANCE = DOCKER_DIR / "dagster.yaml"
PIPELINE = "credit_default"
JOB = f"{PIPELINE}_retrain_job"
STAGES = ("raw_data", "validated_data", "features", "trained_model", "evaluation", "model_package")
# 3,000 rows keep a run around half a minute here; at that size the holdout roc_auc is
# about 0.67, under the demo's floor of 0.70, so the floor is lowered to 0.6
ROWS = 3000


def credit_attributes(rows: int = ROWS, estimator: str = "sklearn.linear_model.LogisticRegression") -> dict[str, Any]:
    """specs.small_credit_attributes with `estimator` for its one model, no selection limits
    (max_latency_ms) and no monitoring."""
    attributes = small_credit_attributes(rows)
    attributes["models"][0]["estimator"] = estimator
    attributes["selection"] = {"metric": "roc_auc", "cv_folds": 2}
    attributes.pop("monitoring")
    return attributes


def credit_spec(**overrides: Any) -> PipelineSpec:
    attributes = credit_attributes(**{k: overrides.pop(k) for k in ("rows", "estimator") if k in overrides})
    attributes.update(overrides)
    return make_spec(**attributes)


def production_instance_config() -> dict[str, Any]:
    return yaml.safe_load(PRODUCTION_INSTANCE.read_text())


def write_instance_home(home: Path, sections: tuple[str, ...] = ("storage", "concurrency"),
                        replace: dict[str, Any] | None = None) -> Path:
    """A DAGSTER_HOME whose dagster.yaml is docker/dagster.yaml with only `sections` kept
    (each as written there, unless `replace` gives it). The storage section reads
    DAGSTER_PG_URL from the environment, as in production."""
    config = production_instance_config()
    kept = {name: copy.deepcopy(config[name]) for name in sections if name in config}
    kept.update(replace or {})
    kept["telemetry"] = {"enabled": False}
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(kept, sort_keys=False))
    return home


def prod_pipeline_defs(spec: PipelineSpec, executor: dg.ExecutorDefinition | None = None) -> dg.Definitions:
    """The spec's assets with the real prod resources and executor from ml_pipelines.defs.resources
    (ML_PIPELINES_ENV=prod must be set; the executor is ML_PIPELINES_EXECUTOR's, k8s by default);
    `executor` replaces it when given."""
    from ml_pipelines.defs.resources import resources

    platform = resources()
    if executor is not None:
        platform = dg.Definitions(resources=platform.resources, executor=executor)
    return dg.Definitions.merge(build_pipeline_defs(spec), platform)
