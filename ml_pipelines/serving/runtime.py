"""The model a service answers with: loaded from the BentoML store, verified
against the registry record, and swapped atomically when the champion moves."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from ml_pipelines.core.errors import ChecksumError
from ml_pipelines.core.layout import LocalLayout
from ml_pipelines.core.model_io import load_model
from ml_pipelines.core.models import predict
from ml_pipelines.core.packaging import RECORD_FILE, model_store
from ml_pipelines.core.records import ModelInputs, VersionRecord
from ml_pipelines.core.registry import ModelRegistry
from ml_pipelines.core.storage import LocalObjectStore
from ml_pipelines.settings import Settings

log = logging.getLogger("ml_pipelines.serving")


@dataclass(frozen=True)
class ServingConfig:
    pipeline: str
    home: Path
    pinned_version: str | None = None
    audit: bool = True
    api_keys: dict[str, str] = field(default_factory=dict, repr=False)  # key id -> sha256 of the key
    watch_seconds: float = 2.0
    from_bento: bool = False  # inside a built bento: the pinned version's record ships with the model
    overrides: Mapping[str, Any] = field(default_factory=dict)  # over the packaged serving settings

    @classmethod
    def from_settings(cls, settings: Settings) -> ServingConfig:
        serve = settings.serve
        if not serve.pipeline:
            raise RuntimeError("ML_PIPELINES_SERVE_PIPELINE is not set; start with `ml-pipelines serve <pipeline>`")
        return cls(
            pipeline=serve.pipeline,
            home=settings.home,
            pinned_version=serve.version,
            audit=serve.audit,
            api_keys=parse_api_keys(serve.api_keys),
            watch_seconds=serve.watch_seconds,
            from_bento=serve.from_bento,
            overrides=dict(serve.overrides),
        )

    @property
    def layout(self) -> LocalLayout:
        return LocalLayout(self.home)

    def registry(self) -> ModelRegistry:
        return ModelRegistry(LocalObjectStore(self.layout.registry))

    def model_dir(self, version: str) -> Path:
        if self.from_bento:
            import bentoml

            return Path(bentoml.models.get(f"{self.pipeline}:{version}").path)
        return Path(model_store(self.layout.bentoml).get(f"{self.pipeline}:{version}").path)

    def record(self, version: str) -> VersionRecord:
        if self.from_bento:
            return VersionRecord.from_json((self.model_dir(version) / RECORD_FILE).read_bytes())
        return self.registry().get_version(self.pipeline, version)

    def initial_version(self) -> str:
        version = self.pinned_version or self.registry().get_alias(self.pipeline, "champion")
        if version is None:
            raise RuntimeError(f"{self.pipeline} has no champion to serve; materialize the pipeline first")
        return version


def parse_api_keys(raw: str) -> dict[str, str]:
    """`id1:sha256hex,id2:sha256hex` -> {id: hash}."""
    keys = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        key_id, _, digest = item.partition(":")
        if not key_id or len(digest) != 64:
            raise RuntimeError(f"ML_PIPELINES_API_KEYS: {item!r} is not `key_id:sha256hex`")
        keys[key_id] = digest.lower()
    return keys


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class LoadedModel:
    version: str
    record: VersionRecord
    model: Pipeline
    categories: dict[str, set[str]]  # categorical input -> categories the encoder knows


def _encoder_categories(model: Pipeline, record: VersionRecord) -> dict[str, set[str]]:
    try:
        encoder = model.named_steps["preprocess"].named_steps["encode"].named_transformers_["categorical"]
    except (KeyError, AttributeError):
        return {}
    columns = record.features.categorical
    return {c: {str(v) for v in cats} for c, cats in zip(columns, encoder.categories_)}


def records_to_frame(rows: list[dict[str, Any]], features: ModelInputs) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(rows, columns=features.inputs)
    for column, kind in features.types.items():
        if column in frame.columns and kind in ("float", "int"):
            frame[column] = pd.to_numeric(frame[column], errors="raise").astype("float64")
    return frame


class ModelHolder:
    def __init__(self, config: ServingConfig):
        self.config = config
        self.current = self.load(config.initial_version())
        self._stop = threading.Event()

    def load(self, version: str) -> LoadedModel:
        record = self.config.record(version)
        directory = self.config.model_dir(version)
        for name, expected in record.artifacts.items():
            actual = hashlib.sha256((directory / name).read_bytes()).hexdigest()
            if actual != expected:
                raise ChecksumError(f"{directory / name}: checksum mismatch with registry record; refusing to serve")
        model = load_model(directory, record.trusted_roots)
        return LoadedModel(version, record, model, _encoder_categories(model, record))

    def refresh(self) -> bool:
        """Switch to the champion if it moved. The old model answers until the new one is ready."""
        if self.config.pinned_version:
            return False
        champion = self.config.registry().get_alias(self.config.pipeline, "champion")
        if champion is None or champion == self.current.version:
            return False
        self.current = self.load(champion)  # one reference swap: atomic for readers
        log.info("now serving %s %s", self.config.pipeline, champion)
        return True

    def watch(self) -> None:
        def loop() -> None:
            while not self._stop.wait(self.config.watch_seconds):
                try:
                    self.refresh()
                except Exception:  # noqa: BLE001 - keep serving the current model
                    log.exception("champion reload failed; still serving %s", self.current.version)

        threading.Thread(target=loop, name="champion-watcher", daemon=True).start()

    def predict_rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        loaded = self.current  # one model for the whole batch
        record = loaded.record
        frame = records_to_frame(rows, record.features)
        predictions, proba = predict(loaded.model, frame, record.task)
        classes = [_plain(c) for c in loaded.model.classes_] if proba is not None else None
        results = []
        for i, row in enumerate(rows):
            result: dict[str, Any] = {"prediction": _plain(predictions[i]), "model_version": loaded.version}
            if classes is not None:
                result["probabilities"] = {str(c): float(p) for c, p in zip(classes, proba[i])}
            unseen = [c for c, known in loaded.categories.items() if row.get(c) is not None and str(row[c]) not in known]
            if unseen:
                result["unseen_categories"] = unseen
            results.append(result)
        return results


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value

