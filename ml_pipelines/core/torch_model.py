"""A tabular MLP in PyTorch behind scikit-learn's estimator interface.

It sits after the shared preprocessing in the model's sklearn Pipeline, so both
frameworks see the same features. Training is deterministic under `seed`,
early stopping watches a held-out validation split, and the model is saved as
a state_dict plus a JSON config (no pickle), read back with weights_only=True.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from torch import nn

STATE_FILE = "torch_state.pt"
CONFIG_FILE = "torch_config.json"


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: cuda was requested but no CUDA device is available")
    return torch.device(device)


def build_mlp(n_inputs: int, hidden_layers: list[int], n_outputs: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = n_inputs
    for size in hidden_layers:
        layers += [nn.Linear(width, size), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = size
    layers.append(nn.Linear(width, n_outputs))
    return nn.Sequential(*layers)


class _TorchMLP(BaseEstimator):
    framework = "torch"
    log_fn: Callable[[str], None] | None = None  # set by the caller for per-epoch logs; never saved

    def __init__(
        self,
        hidden_layers=(64, 32),
        epochs: int = 20,
        batch_size: int = 256,
        learning_rate: float = 1e-3,
        dropout: float = 0.0,
        weight_decay: float = 0.0,
        early_stopping_patience: int | None = 5,
        validation_fraction: float = 0.1,
        device: str = "auto",
        seed: int = 0,
    ):
        self.hidden_layers = hidden_layers
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.dropout = dropout
        self.weight_decay = weight_decay
        self.early_stopping_patience = early_stopping_patience
        self.validation_fraction = validation_fraction
        self.device = device
        self.seed = seed

    # ---- subclass hooks
    def _encode_target(self, y: np.ndarray) -> tuple[torch.Tensor, int]:
        raise NotImplementedError

    def _loss(self) -> nn.Module:
        raise NotImplementedError

    # ---- training
    def fit(self, X, y):  # noqa: N803 - sklearn's signature
        try:
            return self._fit(np.asarray(X, dtype=np.float32), np.asarray(y))
        finally:
            self.log_fn = None  # a logger must not travel with the fitted model

    def _fit(self, x: np.ndarray, y: np.ndarray):
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        device = resolve_device(self.device)
        targets, n_outputs = self._encode_target(y)
        features = torch.from_numpy(x)
        order = rng.permutation(len(x))
        n_val = int(len(x) * self.validation_fraction) if self.early_stopping_patience else 0
        val_idx, train_idx = order[:n_val], order[n_val:]
        x_train, y_train = features[train_idx].to(device), targets[train_idx].to(device)
        x_val, y_val = features[val_idx].to(device), targets[val_idx].to(device)

        self.n_features_in_ = x.shape[1]
        self.module_ = build_mlp(x.shape[1], list(self.hidden_layers), n_outputs, self.dropout).to(device)
        optimizer = torch.optim.Adam(
            self.module_.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay
        )
        loss_fn = self._loss()
        generator = torch.Generator().manual_seed(self.seed)
        best_loss, best_state, stale = float("inf"), None, 0
        self.history_ = []
        for epoch in range(1, self.epochs + 1):
            self.module_.train()
            permutation = torch.randperm(len(x_train), generator=generator).to(device)
            total = 0.0
            for start in range(0, len(x_train), self.batch_size):
                batch = permutation[start : start + self.batch_size]
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(self.module_(x_train[batch]), y_train[batch])
                loss.backward()
                optimizer.step()
                total += loss.item() * len(batch)
            train_loss = total / max(len(x_train), 1)
            val_loss = self._evaluate_loss(x_val, y_val, loss_fn) if n_val else train_loss
            self.history_.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss})
            if self.log_fn:
                self.log_fn(f"torch epoch {epoch}/{self.epochs}: train_loss={train_loss:.5f} val_loss={val_loss:.5f}")
            if val_loss < best_loss - 1e-6:
                best_loss, best_state, stale = val_loss, copy.deepcopy(self.module_.state_dict()), 0
            else:
                stale += 1
                if self.early_stopping_patience and stale >= self.early_stopping_patience:
                    if self.log_fn:
                        self.log_fn(f"torch early stop at epoch {epoch}: best val_loss={best_loss:.5f}")
                    break
        if best_state is not None:
            self.module_.load_state_dict(best_state)
        self.module_.to("cpu").eval()
        return self

    def _evaluate_loss(self, x: torch.Tensor, y: torch.Tensor, loss_fn: nn.Module) -> float:
        self.module_.eval()
        with torch.no_grad():
            return float(loss_fn(self.module_(x), y).item())

    def _forward(self, X) -> np.ndarray:  # noqa: N803
        self.module_.eval()
        with torch.no_grad():
            return self.module_(torch.from_numpy(np.asarray(X, dtype=np.float32))).numpy()

    # ---- persistence without pickle
    def _extra_config(self) -> dict:
        return {}

    def save(self, directory: Path) -> list[Path]:
        config = {
            "kind": type(self).__name__,
            "params": {**self.get_params(), "hidden_layers": list(self.hidden_layers)},
            "n_features_in": int(self.n_features_in_),
            **self._extra_config(),
        }
        state, config_path = directory / STATE_FILE, directory / CONFIG_FILE
        torch.save(self.module_.state_dict(), state)
        config_path.write_text(json.dumps(config, indent=2))
        return [state, config_path]


class TorchMLPClassifier(ClassifierMixin, _TorchMLP):
    def _encode_target(self, y: np.ndarray) -> tuple[torch.Tensor, int]:
        self.classes_, encoded = np.unique(y, return_inverse=True)
        return torch.from_numpy(encoded.astype(np.int64)), len(self.classes_)

    def _loss(self) -> nn.Module:
        return nn.CrossEntropyLoss()

    def predict_proba(self, X) -> np.ndarray:  # noqa: N803
        return torch.softmax(torch.from_numpy(self._forward(X)), dim=1).numpy()

    def predict(self, X) -> np.ndarray:  # noqa: N803
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    def _extra_config(self) -> dict:
        return {"classes": self.classes_.tolist()}


class TorchMLPRegressor(RegressorMixin, _TorchMLP):
    def _encode_target(self, y: np.ndarray) -> tuple[torch.Tensor, int]:
        y = y.astype(np.float64)
        self.y_mean_, self.y_std_ = float(y.mean()), float(y.std() or 1.0)
        return torch.from_numpy(((y - self.y_mean_) / self.y_std_).astype(np.float32)).unsqueeze(1), 1

    def _loss(self) -> nn.Module:
        return nn.MSELoss()

    def predict(self, X) -> np.ndarray:  # noqa: N803
        return self._forward(X)[:, 0].astype(np.float64) * self.y_std_ + self.y_mean_

    def _extra_config(self) -> dict:
        return {"y_mean": self.y_mean_, "y_std": self.y_std_}


def load_torch_estimator(directory: Path) -> _TorchMLP:
    config = json.loads((directory / CONFIG_FILE).read_text())
    cls = {"TorchMLPClassifier": TorchMLPClassifier, "TorchMLPRegressor": TorchMLPRegressor}[config["kind"]]
    estimator = cls(**config["params"])
    params = config["params"]
    n_outputs = len(config["classes"]) if "classes" in config else 1
    estimator.module_ = build_mlp(config["n_features_in"], list(params["hidden_layers"]), n_outputs, params["dropout"])
    estimator.module_.load_state_dict(torch.load(directory / STATE_FILE, weights_only=True, map_location="cpu"))
    estimator.module_.eval()
    estimator.n_features_in_ = config["n_features_in"]
    if "classes" in config:
        estimator.classes_ = np.array(config["classes"])
    else:
        estimator.y_mean_, estimator.y_std_ = config["y_mean"], config["y_std"]
    return estimator
