"""core.models.predict: one preprocessing pass for a classifier's predictions and
probabilities, with the same answers as the pipeline's own predict and predict_proba."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from ml_pipelines.core.models import predict


class CountingTransformer(FunctionTransformer):
    calls = 0

    def transform(self, X):
        CountingTransformer.calls += 1
        return super().transform(X)


def _data(rows: int = 300) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(4)
    frame = pd.DataFrame({"a": rng.normal(size=rows), "b": rng.normal(size=rows)})
    target = np.where(frame["a"] + 0.5 * rng.normal(size=rows) > 0, "yes", "no")
    return frame, target


def test_a_classifier_pipeline_preprocesses_once_and_answers_as_the_pipeline_does():
    frame, target = _data()
    model = Pipeline([("count", CountingTransformer()), ("scale", StandardScaler()),
                      ("model", LogisticRegression())]).fit(frame, target)
    CountingTransformer.calls = 0
    predictions, proba = predict(model, frame, "classification")
    assert CountingTransformer.calls == 1
    assert list(predictions) == list(model.predict(frame))
    np.testing.assert_allclose(proba, model.predict_proba(frame))


class CautiousClassifier(LogisticRegression):
    """Says "yes" only when it is 80% sure: its predict is not the most probable class."""

    def predict(self, X):
        return np.where(self.predict_proba(X)[:, 1] >= 0.8, self.classes_[1], self.classes_[0])


def test_an_estimator_whose_predict_is_not_the_most_probable_class_keeps_its_own_rule():
    frame, target = _data()
    model = Pipeline([("scale", StandardScaler()), ("model", CautiousClassifier())]).fit(frame, target)
    predictions, proba = predict(model, frame, "classification")
    assert list(predictions) == list(model.predict(frame))
    most_probable = model.classes_[proba.argmax(axis=1)]
    assert (predictions != most_probable).any()  # the case is real: the rules differ on some rows


def test_a_regressor_has_no_probabilities():
    frame, _ = _data()
    model = Pipeline([("model", LinearRegression())]).fit(frame, frame["a"] * 2)
    predictions, proba = predict(model, frame, "regression")
    assert proba is None
    np.testing.assert_allclose(predictions, frame["a"] * 2, atol=1e-9)
