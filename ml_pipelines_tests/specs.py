"""Pipeline specs for the tests, in one place: the shipped demo specs as written
(`shipped_attributes`), credit_default shrunk so that it trains in seconds
(`small_credit_attributes`), and `make_spec` for a spec written in the test."""

from __future__ import annotations

from typing import Any

import yaml

from ml_pipelines.spec import PipelineSpec
from ml_pipelines_tests import REPO_ROOT

PIPELINES_DIR = REPO_ROOT / "ml_pipelines" / "defs" / "pipelines"
NAME = "credit_default"  # the pipeline small_credit_attributes() describes
INPUTS = ("income", "age", "employment_years", "debt_ratio", "credit_lines", "purpose", "home_ownership", "dependents")
CREDIT_ROWS = 3000


def shipped_names() -> list[str]:
    """Every demo pipeline under ml_pipelines/defs/pipelines, sorted."""
    return sorted(path.parent.name for path in PIPELINES_DIR.glob("*/defs.yaml"))


def shipped_attributes(name: str) -> dict[str, Any]:
    """The `attributes` of ml_pipelines/defs/pipelines/<name>/defs.yaml, a fresh copy on every call."""
    return yaml.safe_load((PIPELINES_DIR / name / "defs.yaml").read_text())["attributes"]


def small_credit_attributes(rows: int = CREDIT_ROWS, *, sensors: bool = True, **monitoring: Any) -> dict[str, Any]:
    """The shipped credit_default spec, shrunk: fewer rows, one sklearn model and a quick
    evaluation; same schema, features and landing folder. `monitoring` replaces keys of
    its monitoring section; `sensors=False` turns its sensors off, so that a running
    daemon starts no runs of its own."""
    attributes = shipped_attributes(NAME)
    attributes["source"]["params"]["rows"] = rows
    attributes["models"] = [
        {"name": "logreg", "estimator": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 500}}
    ]
    attributes["selection"]["cv_folds"] = 2
    attributes["evaluation"]["bootstrap_samples"] = 50
    attributes["evaluation"]["gate"]["min"] = 0.6  # 3,000 rows give a holdout roc_auc of about 0.67
    for key, value in monitoring.items():
        attributes["monitoring"][key] = value
    if not sensors:
        attributes["monitoring"]["sensors_enabled"] = False
    return attributes


def make_spec(**attributes: Any) -> PipelineSpec:
    return PipelineSpec.model_validate(attributes)
