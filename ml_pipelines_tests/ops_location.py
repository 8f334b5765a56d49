"""A second code location for the operations tests under a real `dagster dev`
(components/test_dagster_dev.py loads it beside the project's own, with OPS_WORKSPACE):
small diabetes pipelines, each its own team, built by the project's own factory and
policies, with the platform's resources and executor.

- `ops_idle`: its ingestion sleeps, with resources.ingest.idle_timeout 5s;
- `ops_runaway`: its ingestion sleeps past resources.ingest.max_runtime 15s;
- `ops_runaway_ui`: the same, launched as the UI's Materialize button does (the implicit asset job);
- `ops_a`, `ops_b`: two teams' quick pipelines, whose training shares the `train` pool.

The slow ingestion is a real spec feature: a generator named by dotted path (source.generator)
with its params, here one that waits before it returns scikit-learn's diabetes data.
"""

from __future__ import annotations

import time
from typing import Any

import dagster as dg
import pandas as pd

from ml_pipelines.components import build_pipeline_defs
from ml_pipelines.datasets.sklearn_data import diabetes
from ml_pipelines.definitions import apply_policies
from ml_pipelines.defs.resources import platform_executor, platform_resources
from ml_pipelines.settings import Settings
from ml_pipelines.spec import PipelineSpec
from ml_pipelines_tests.specs import shipped_attributes

LOCATION = "ops"
IDLE_TIMEOUT_S = 5
MAX_RUNTIME_S = 15
SLEEP_S = 120  # far longer than either limit: only the limit ends the step


def diabetes_after(sleep_s: float = 0.0) -> pd.DataFrame:
    """scikit-learn's diabetes data, after `sleep_s` seconds of doing nothing."""
    time.sleep(sleep_s)
    return diabetes()


def ops_attributes(name: str, *, sleep_s: float = 0.0, resources: dict[str, Any] | None = None) -> dict[str, Any]:
    """The shipped diabetes_progression spec as pipeline `name` of team `name`: one model, a short evaluation."""
    attributes = shipped_attributes("diabetes_progression")
    attributes.update(name=name, owners=[f"team:{name.replace('_', '-')}"])
    attributes["source"] = {"kind": "synthetic", "generator": "ml_pipelines_tests.ops_location:diabetes_after",
                            "params": {"sleep_s": sleep_s}}
    # training takes a few seconds (7 fits of 400 trees, about 3 s of fitting here), so that two
    # runs' training steps, started together, would overlap without the pool
    attributes["models"] = [{"name": "forest", "estimator": "sklearn.ensemble.RandomForestRegressor",
                             "params": {"n_estimators": 400}, "search": {"min_samples_leaf": [3, 5]}}]
    attributes["selection"] = {"cv_folds": 3}
    attributes["evaluation"] = {"gate": {"metric": "r2", "min": 0.1}, "bootstrap_samples": 50}
    if resources:
        attributes["resources"] = resources
    return attributes


def ops_specs() -> list[PipelineSpec]:
    return [PipelineSpec.model_validate(a) for a in (
        ops_attributes("ops_idle", sleep_s=SLEEP_S, resources={"ingest": {"idle_timeout": f"{IDLE_TIMEOUT_S}s"}}),
        ops_attributes("ops_runaway", sleep_s=SLEEP_S, resources={"ingest": {"max_runtime": f"{MAX_RUNTIME_S}s"}}),
        ops_attributes("ops_runaway_ui", sleep_s=SLEEP_S, resources={"ingest": {"max_runtime": f"{MAX_RUNTIME_S}s"}}),
        ops_attributes("ops_a"),
        ops_attributes("ops_b"),
    )]


@dg.definitions
def defs() -> dg.Definitions:
    settings = Settings.from_env()
    pipelines = [apply_policies(build_pipeline_defs(spec)) for spec in ops_specs()]
    return dg.Definitions.merge(
        *pipelines,
        dg.Definitions(resources=platform_resources(settings), executor=platform_executor(settings)),
    )
