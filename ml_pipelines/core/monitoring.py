"""The glue between a trained model and drift monitoring: which columns are
watched, what "the prediction distribution" means, and the reference profile."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from ml_pipelines.core.drift import DriftReport, ReferenceProfile, build_profile, compute_drift
from ml_pipelines.core.features import FeatureSet
from ml_pipelines.core.frame_codec import row_chunks
from ml_pipelines.core.models import predict
from ml_pipelines.spec import DriftSpec

PROFILE_FILE = "profile.npz"
NUMERIC_TYPES = ("float", "int")


def watched_columns(input_types: dict[str, str]) -> tuple[list[str], list[str]]:
    numeric = [c for c, t in input_types.items() if t in NUMERIC_TYPES]
    categorical = [c for c, t in input_types.items() if t not in NUMERIC_TYPES and t != "datetime"]
    return numeric, categorical


# rows scored at once: the model's preprocessing copies the rows it scores (a dense float matrix,
# derived columns), so the 8M training rows of a 10M-row run in one call held gigabytes more
PREDICTION_CHUNK_ROWS = 500_000


def prediction_values(model: Pipeline, frame: pd.DataFrame, task: str) -> tuple[np.ndarray, bool]:
    """Regression: the prediction. Binary: P(positive class). Multiclass: the label.
    Returns (values, categorical). Scored PREDICTION_CHUNK_ROWS rows at a time."""
    parts = [_chunk_values(model, chunk, task) for chunk in row_chunks(frame, PREDICTION_CHUNK_ROWS)]
    return np.concatenate([values for values, _ in parts]), parts[0][1]


def _chunk_values(model: Pipeline, frame: pd.DataFrame, task: str) -> tuple[np.ndarray, bool]:
    predictions, proba = predict(model, frame, task)
    if task == "regression":
        return np.asarray(predictions, dtype=np.float64), False
    if proba is not None and proba.shape[1] == 2:
        return proba[:, 1], False
    return np.asarray(predictions).astype(str), True


def reference_profile(model: Pipeline, features: FeatureSet) -> ReferenceProfile:
    """Profile of the training rows the model was fitted on, plus its predictions on them."""
    numeric, categorical = watched_columns(features.input_types())
    x_train, _ = features.xy("train")
    values, categorical_predictions = prediction_values(model, x_train, features.task)
    return build_profile(x_train, numeric, categorical, values, categorical_predictions)


def drift_against(
    profile: ReferenceProfile, batch: pd.DataFrame, spec: DriftSpec, model: Pipeline | None, task: str
) -> DriftReport:
    predictions = None
    if model is not None:
        usable = [c for c in profile.columns() if c in batch.columns]
        if len(usable) == len(profile.columns()):
            # the encoder was fitted on text; a landed file may carry a categorical column as
            # numbers, or as float NaN when the column is entirely empty
            scored = batch.astype({c: "str" for c in profile.categorical})
            predictions, _ = prediction_values(model, scored, task)
    return compute_drift(
        profile, batch, method=spec.method, threshold=spec.threshold, share=spec.share, predictions=predictions
    )
