"""core.models.predict: one preprocessing pass for a classifier's predictions and
probabilities, with the same answers as the pipeline's own predict and predict_proba."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from ml_pipelines.core.features import build_feature_set
from ml_pipelines.core.models import build_model, expand_candidates, predict
from ml_pipelines.core.sources import coerce_declared_types, load_source
from ml_pipelines_tests.specs import make_spec, shipped_attributes


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


@pytest.mark.parametrize("pipeline", ["credit_default", "wine_cultivar"])
def test_every_demo_classifier_gives_the_same_answers_in_one_pass(pipeline, one_thread):
    """Every candidate the classification demos train (gradient boosting, logistic regression,
    random forest, the torch MLP), fitted on a little of the demo's data: one pass gives exactly
    the pipeline's own predict and predict_proba."""
    attributes = shipped_attributes(pipeline)
    if "rows" in attributes["source"].get("params", {}):
        attributes["source"]["params"]["rows"] = 1500
    spec = make_spec(**attributes)
    loaded = load_source(spec.source)
    features = build_feature_set(spec, coerce_declared_types(loaded.frame, spec.data_schema, loaded.description))
    x, y = features.xy("train")
    test_x, _ = features.xy("test")
    candidates = expand_candidates(spec.models)
    assert {c.model.name for c in candidates} == {m.name for m in spec.models}
    for candidate in candidates:
        model = build_model(candidate, features.columns, spec.task).fit(x, y)
        predictions, proba = predict(model, test_x, "classification")
        assert list(predictions) == list(model.predict(test_x)), candidate.label
        np.testing.assert_array_equal(proba, model.predict_proba(test_x))
