"""Registry versions made by direct core calls, for the reproduce, diff and gc tests: the features,
selection, evaluation and staging functions the assets call, without Dagster and without building
a bento (the record names a package that was never built, which nothing here serves)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from ml_pipelines.core.evaluation import evaluate_for_spec
from ml_pipelines.core.features import build_feature_set
from ml_pipelines.core.gate import gate_for
from ml_pipelines.core.hashing import frame_hash
from ml_pipelines.core.packaging import commit_version, record_fields, stage_version
from ml_pipelines.core.records import ServingPackage, Trigger, VersionRecord
from ml_pipelines.core.registry import ModelRegistry
from ml_pipelines.core.selection import select_for_spec
from ml_pipelines.core.snapshots import store_training_data
from ml_pipelines.core.validation import spec_schema
from ml_pipelines.spec import PipelineSpec
from ml_pipelines_tests import REPO_ROOT

CHURN_CSV = REPO_ROOT / "examples" / "churn.csv"
CHANGED_ROW, DROPPED_ROW, NEW_CHARGE = 3, 10, 100.0  # how changed_churn_frame differs from churn_frame


def churn_attributes(path: Path, **changes: Any) -> dict[str, Any]:
    """A small classification spec over a copy of examples/churn.csv at path."""
    attributes = {
        "name": "churn", "task": "classification", "target": "churned",
        "source": {"kind": "csv", "path": str(path)},
        "features": {"numeric": ["tenure_months", "monthly_charges", "support_calls"], "categorical": ["contract"]},
        "models": [{"name": "logreg", "estimator": "sklearn.linear_model.LogisticRegression",
                    "params": {"max_iter": 500}}],
        "selection": {"metric": "roc_auc", "cv_folds": 2},
        "evaluation": {"metrics": ["roc_auc", "accuracy"], "bootstrap_samples": 20, "gate": {"min": 0.5}},
    }
    return {**attributes, **changes}


def churn_frame() -> pd.DataFrame:
    return pd.read_csv(CHURN_CSV)


def changed_churn_frame() -> pd.DataFrame:
    """churn_frame with one row changed (still within the validated ranges) and one row dropped."""
    frame = churn_frame()
    frame.loc[CHANGED_ROW, "monthly_charges"] = NEW_CHARGE
    return frame.drop(index=[DROPPED_ROW]).reset_index(drop=True)


def train_version(registry: ModelRegistry, spec: PipelineSpec, frame: pd.DataFrame, version: str) -> VersionRecord:
    """One committed version of spec trained on frame, its data stored as the features step stores it."""
    data_version = frame_hash(frame)
    schema = spec_schema(spec, frame, reference=None)
    features = build_feature_set(spec, frame).with_lineage(data_version=data_version, schema=schema, partitions=())
    features = features.with_data_snapshot(store_training_data(registry, spec.name, frame, data_version))
    selection = select_for_spec(spec, features)
    evaluation = evaluate_for_spec(spec, selection.model, features, champion=None)
    fields = record_fields(spec, selection, evaluation, features, gate_for(spec, evaluation), Trigger(f"run-{version}"))
    package = ServingPackage(f"{spec.name}:{version}", f"{spec.name}:{version}")
    with tempfile.TemporaryDirectory(prefix="versions-") as tmp:
        record = stage_version(registry, spec, version, Path(tmp), selection, evaluation, features,
                               package=package, **fields)
    return commit_version(registry, record)
