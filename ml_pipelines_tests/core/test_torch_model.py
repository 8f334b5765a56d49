"""The PyTorch MLP behind sklearn's interface (core.torch_model) and its
pickle-free persistence through core.model_io."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import r2_score
from torch import nn

from ml_pipelines.core import model_io, torch_model
from ml_pipelines.core.features import FeatureColumns
from ml_pipelines.core.model_io import load_model, save_model
from ml_pipelines.core.models import Candidate, build_model
from ml_pipelines.core.torch_model import (
    CONFIG_FILE,
    STATE_FILE,
    TorchMLPClassifier,
    TorchMLPRegressor,
    resolve_device,
)
from ml_pipelines.spec import TorchModel

pytestmark = pytest.mark.usefixtures("one_thread")


def _binary(rows: int = 1200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 5)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] + 0.3 * rng.normal(size=rows) > 0).astype(np.int64)
    return x, y


def _frame(rows: int = 900, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=rows), rng.normal(size=rows)
    colour = rng.choice(["red", "green", "blue"], size=rows)
    label = np.where(a > 0.5, "high", np.where(a < -0.5, "low", "mid"))
    return pd.DataFrame(
        {
            "a": a,
            "b": b,
            "colour": pd.array(colour, dtype="str"),
            "label": pd.array(label, dtype="str"),
            "amount": 3.0 * a - 2.0 * b + 0.1 * rng.normal(size=rows) + 50.0,
        }
    )


COLUMNS = FeatureColumns(numeric=("a", "b"), categorical=("colour",), derived=(), inputs=("a", "b", "colour"))


def _torch_pipeline(task: str, **overrides):
    config = {"name": "mlp", "framework": "torch", "hidden_layers": [16], "epochs": 20, "batch_size": 64,
              "learning_rate": 0.01, "early_stopping_patience": None, **overrides}
    return build_model(Candidate(TorchModel.model_validate(config)), COLUMNS, task)


# ------------------------------------------------------------------ determinism


def test_two_fits_with_the_same_seed_predict_identically():
    x, y = _binary()
    params = dict(hidden_layers=[32, 16], epochs=4, batch_size=64, dropout=0.2, seed=11)
    first = TorchMLPClassifier(**params).fit(x, y)
    second = TorchMLPClassifier(**params).fit(x, y)
    np.testing.assert_array_equal(first.predict_proba(x), second.predict_proba(x))
    assert first.history_ == second.history_
    # the seed is what makes them equal: another seed gives another model
    other = TorchMLPClassifier(**{**params, "seed": 12}).fit(x, y)
    assert not np.array_equal(first.predict_proba(x), other.predict_proba(x))


def test_global_rng_state_does_not_change_the_fit():
    x, y = _binary()
    torch.manual_seed(123)
    np.random.seed(123)
    first = TorchMLPClassifier(hidden_layers=[8], epochs=3, seed=5).fit(x, y)
    torch.manual_seed(999)
    np.random.seed(999)
    second = TorchMLPClassifier(hidden_layers=[8], epochs=3, seed=5).fit(x, y)
    np.testing.assert_array_equal(first.predict_proba(x), second.predict_proba(x))


# ------------------------------------------------------------------ early stopping and logs


def _validation_split(n: int, seed: int, fraction: float) -> np.ndarray:
    """The rows the estimator holds out for early stopping (same recipe as _TorchMLP._fit)."""
    order = np.random.default_rng(seed).permutation(n)
    return order[: int(n * fraction)]


def test_early_stopping_stops_before_epochs_and_restores_the_best_state():
    # a weak signal in many noise columns: a wide net fits the signal in an epoch or two, then the
    # validation loss plateaus and rises as it memorises the noise
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 20)).astype(np.float32)
    y = (x[:, 0] + 1.5 * rng.normal(size=600) > 0).astype(np.int64)
    epochs, patience, seed, fraction = 200, 3, 4, 0.25
    lines: list[str] = []
    model = TorchMLPClassifier(
        hidden_layers=[128, 128], epochs=epochs, batch_size=32, learning_rate=0.003,
        early_stopping_patience=patience, validation_fraction=fraction, seed=seed,
    )
    model.log_fn = lines.append
    model.fit(x, y)

    history = model.history_
    assert len(history) < epochs
    val_losses = [h["val_loss"] for h in history]
    best_epoch = int(np.argmin(val_losses)) + 1
    # it stopped exactly `patience` epochs after the best one
    assert len(history) == best_epoch + patience
    assert history[-1]["val_loss"] > min(val_losses) + 1e-4

    # the weights in place are those of the best epoch, not the last one
    val_idx = _validation_split(len(x), seed, fraction)
    with torch.no_grad():
        logits = model.module_(torch.from_numpy(x[val_idx]))
        restored = float(nn.CrossEntropyLoss()(logits, torch.from_numpy(y[val_idx])).item())
    assert restored == pytest.approx(min(val_losses), abs=1e-5)

    # one log line per epoch, then the early stop
    epoch_lines = [line for line in lines if line.startswith("torch epoch ")]
    assert len(epoch_lines) == len(history)
    assert epoch_lines[0].startswith(f"torch epoch 1/{epochs}: train_loss=")
    assert "val_loss=" in epoch_lines[-1]
    assert lines[-1].startswith(f"torch early stop at epoch {len(history)}")
    assert f"best val_loss={min(val_losses):.5f}" in lines[-1]
    # the logger does not travel with the fitted model
    assert model.log_fn is None


def test_without_early_stopping_every_epoch_runs_and_is_logged():
    x, y = _binary(400)
    lines: list[str] = []
    model = TorchMLPClassifier(hidden_layers=[8], epochs=6, early_stopping_patience=None)
    model.log_fn = lines.append
    model.fit(x, y)
    assert len(model.history_) == 6
    assert [line.split(":")[0] for line in lines] == [f"torch epoch {i}/6" for i in range(1, 7)]


# ------------------------------------------------------------------ tasks


def test_regression_learns_in_the_target_scale():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(1500, 3)).astype(np.float32)
    y = 1000.0 + 40.0 * x[:, 0] - 25.0 * x[:, 1] + rng.normal(size=1500)
    model = TorchMLPRegressor(hidden_layers=[32], epochs=40, batch_size=64, learning_rate=0.01, seed=0).fit(x, y)
    predictions = model.predict(x)
    assert predictions.dtype == np.float64
    assert r2_score(y, predictions) > 0.95
    assert abs(predictions.mean() - y.mean()) < 5.0


def test_multiclass_with_string_labels():
    frame = _frame()
    x, y = frame[["a", "b"]].to_numpy(np.float32), frame["label"].to_numpy()
    model = TorchMLPClassifier(hidden_layers=[32], epochs=40, batch_size=64, learning_rate=0.01, seed=0).fit(x, y)
    assert list(model.classes_) == ["high", "low", "mid"]
    proba = model.predict_proba(x)
    assert proba.shape == (len(x), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    predictions = model.predict(x)
    assert set(predictions) <= {"high", "low", "mid"}
    assert (predictions == y).mean() > 0.9


# ------------------------------------------------------------------ persistence


def _spy_torch_load(monkeypatch) -> list[dict]:
    calls: list[dict] = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch_model.torch, "load", spy)
    return calls


@pytest.mark.parametrize(
    ("task", "target"), [("classification", "label"), ("regression", "amount")], ids=["multiclass", "regression"]
)
def test_save_load_round_trip_without_pickle(task, target, tmp_path, monkeypatch):
    frame = _frame()
    x, y = frame[list(COLUMNS.inputs)], frame[target]
    model = _torch_pipeline(task).fit(x, y)
    written = save_model(model, tmp_path)

    names = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert names == sorted([model_io.PREPROCESS_FILE, STATE_FILE, CONFIG_FILE])
    assert sorted(p.name for p in written) == names
    assert not [n for n in names if n.endswith((".pkl", ".pickle", ".joblib"))]
    config = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert config["kind"] == ("TorchMLPClassifier" if task == "classification" else "TorchMLPRegressor")
    assert config["params"]["hidden_layers"] == [16]
    assert config["n_features_in"] == model[-1].n_features_in_
    if task == "classification":
        assert config["classes"] == ["high", "low", "mid"]
    # the state file holds tensors only: it loads under weights_only
    state = torch.load(tmp_path / STATE_FILE, weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())

    calls = _spy_torch_load(monkeypatch)
    loaded = load_model(tmp_path)
    assert calls and all(call.get("weights_only") is True for call in calls)
    assert loaded[-1].framework == "torch"
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    if task == "classification":
        np.testing.assert_array_equal(loaded.predict_proba(x), model.predict_proba(x))
        assert list(loaded.classes_) == ["high", "low", "mid"]


class _Payload:
    """Unpickling this creates a file: proof that arbitrary code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_tampered_state_file_with_a_pickled_object_is_refused(tmp_path):
    frame = _frame()
    model = _torch_pipeline("classification", epochs=2).fit(frame[list(COLUMNS.inputs)], frame["label"])
    artifacts = tmp_path / "model"
    save_model(model, artifacts)
    marker = tmp_path / "code-ran"
    state = torch.load(artifacts / STATE_FILE, weights_only=True)
    torch.save({**state, "payload": _Payload(marker)}, artifacts / STATE_FILE)

    with pytest.raises(pickle.UnpicklingError):
        load_model(artifacts)
    assert not marker.exists()

    # the tampered file really is dangerous: a plain pickle load runs the payload
    torch.load(artifacts / STATE_FILE, weights_only=False)
    assert marker.exists()


def test_serialized_size_counts_the_state_dict(tmp_path):
    frame = _frame()
    small = _torch_pipeline("classification", hidden_layers=[4], epochs=1).fit(frame[["a", "b", "colour"]], frame["label"])
    large = _torch_pipeline("classification", hidden_layers=[256, 256], epochs=1).fit(
        frame[["a", "b", "colour"]], frame["label"]
    )
    small_size, large_size = model_io.serialized_size_bytes(small), model_io.serialized_size_bytes(large)
    assert large_size > small_size + 256 * 256 * 4  # at least the second layer's float32 weights
    save_model(large, tmp_path)
    on_disk = sum(p.stat().st_size for p in tmp_path.iterdir() if p.name != CONFIG_FILE)
    assert abs(on_disk - large_size) / on_disk < 0.05


# ------------------------------------------------------------------ devices


def test_device_cuda_without_cuda_raises_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    x, y = _binary(200)
    with pytest.raises(RuntimeError, match="device: cuda was requested but no CUDA device is available"):
        TorchMLPClassifier(epochs=1, device="cuda").fit(x, y)
    with pytest.raises(RuntimeError, match="no CUDA device"):
        resolve_device("cuda")


def test_device_auto_picks_cpu_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    x, y = _binary(200)
    model = TorchMLPClassifier(hidden_layers=[4], epochs=1, device="auto").fit(x, y)
    assert {p.device.type for p in model.module_.parameters()} == {"cpu"}


def test_auto_picks_cpu_on_this_machine():
    # CI machines have no GPU; where one is present auto must pick it
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
