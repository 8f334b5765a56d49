"""Candidate models behind one interface: an sklearn Pipeline of
(derived columns -> encoding -> estimator). sklearn estimators are named by
dotted path; the torch MLP (core.torch_model) is an sklearn-compatible estimator,
so evaluation and serving treat both frameworks alike.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import is_classifier, is_regressor
from sklearn.pipeline import Pipeline

from ml_pipelines.core.errors import ModelError
from ml_pipelines.core.features import FeatureColumns, build_preprocessor
from ml_pipelines.dotted import import_dotted
from ml_pipelines.spec import SklearnModel, TorchModel


@dataclass(frozen=True)
class Candidate:
    """One point of a model's search grid."""

    model: SklearnModel | TorchModel
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        if not self.params:
            return self.model.name
        return f"{self.model.name}(" + ", ".join(f"{k}={v}" for k, v in sorted(self.params.items())) + ")"


def expand_candidates(models: list[SklearnModel | TorchModel]) -> list[Candidate]:
    candidates = []
    for model in models:
        keys = sorted(model.search)
        for values in itertools.product(*(model.search[k] for k in keys)):
            candidates.append(Candidate(model, dict(zip(keys, values))))
    return candidates


def build_estimator(candidate: Candidate, task: str, seed: int = 0):
    model = candidate.model
    if isinstance(model, TorchModel):
        from ml_pipelines.core.torch_model import TorchMLPClassifier, TorchMLPRegressor

        config = model.model_dump(exclude={"name", "framework", "search"})
        config.update(candidate.params)
        cls = TorchMLPClassifier if task == "classification" else TorchMLPRegressor
        return cls(**config)
    estimator_cls = import_dotted(model.estimator)
    params = {**model.params, **candidate.params}
    try:
        estimator = estimator_cls(**params)
    except TypeError as exc:
        raise ModelError(f"models.{model.name}: {model.estimator} rejects its params: {exc}") from exc
    if "random_state" in estimator.get_params() and "random_state" not in params:
        estimator.set_params(random_state=seed)
    if task == "classification" and not is_classifier(estimator):
        raise ModelError(f"models.{model.name}: {model.estimator} is not a classifier")
    if task == "regression" and not is_regressor(estimator):
        raise ModelError(f"models.{model.name}: {model.estimator} is not a regressor")
    return estimator


def build_model(candidate: Candidate, columns: FeatureColumns, task: str, seed: int = 0) -> Pipeline:
    return Pipeline(
        [("preprocess", build_preprocessor(columns)), ("model", build_estimator(candidate, task, seed))]
    )


def predict(model: Pipeline, frame: pd.DataFrame, task: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Predictions and, for classifiers, class probabilities (columns in model.classes_ order).
    The preprocessing steps run once, and the final estimator gives both answers from their output
    (its own predict, so an estimator whose predict is not the most probable class keeps its rule)."""
    if not (task == "classification" and hasattr(model, "predict_proba")):
        return np.asarray(model.predict(frame)), None
    if isinstance(model, Pipeline) and len(model.steps) > 1:
        features, estimator = model[:-1].transform(frame), model.steps[-1][1]
    else:
        features, estimator = frame, model
    return np.asarray(estimator.predict(features)), estimator.predict_proba(features)
