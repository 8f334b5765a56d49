"""Demo specs as the end-to-end tests use them: read from the shipped defs.yaml,
shrunk where training the full demo would be slow."""

from __future__ import annotations

from typing import Any

import yaml

from ml_pipelines_tests.servers import REPO_ROOT

PIPELINES_DIR = REPO_ROOT / "ml_pipelines" / "defs" / "pipelines"
CREDIT_ROWS = 3000


def shipped_attributes(name: str) -> dict[str, Any]:
    """The `attributes` of ml_pipelines/defs/pipelines/<name>/defs.yaml."""
    return yaml.safe_load((PIPELINES_DIR / name / "defs.yaml").read_text())["attributes"]


def small_credit_attributes(rows: int = CREDIT_ROWS) -> dict[str, Any]:
    """The shipped credit_default spec, shrunk: fewer rows, one sklearn model, a quick
    evaluation, and sensors off so that a running daemon starts no runs of its own."""
    attributes = shipped_attributes("credit_default")
    attributes["source"]["params"]["rows"] = rows
    attributes["models"] = [
        {"name": "logreg", "estimator": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 500}}
    ]
    attributes["selection"]["cv_folds"] = 2
    attributes["evaluation"]["bootstrap_samples"] = 50
    attributes["evaluation"]["gate"]["min"] = 0.6  # 3,000 rows give a holdout roc_auc of about 0.67
    attributes["monitoring"]["sensors_enabled"] = False
    return attributes
