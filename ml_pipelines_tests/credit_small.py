"""The shipped credit_default spec, shrunk for monitoring tests: fewer rows, one sklearn
model and a quick evaluation, same schema, features and landing folder."""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
CREDIT_YAML = REPO_ROOT / "ml_pipelines" / "defs" / "pipelines" / "credit_default" / "defs.yaml"
NAME = "credit_default"
INPUTS = ("income", "age", "employment_years", "debt_ratio", "credit_lines", "purpose", "home_ownership", "dependents")


@cache
def _shipped() -> dict[str, Any]:
    return yaml.safe_load(CREDIT_YAML.read_text())["attributes"]


def small_credit_attributes(rows: int = 3000, **monitoring: Any) -> dict[str, Any]:
    attributes = copy.deepcopy(_shipped())
    attributes["source"]["params"]["rows"] = rows
    attributes["models"] = [
        {"name": "logreg", "estimator": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 500}}
    ]
    attributes["selection"]["cv_folds"] = 2
    attributes["evaluation"]["bootstrap_samples"] = 50
    attributes["evaluation"]["gate"]["min"] = 0.6  # 3000 rows give roc_auc ~0.67
    for key, value in monitoring.items():
        attributes["monitoring"][key] = value
    return attributes
