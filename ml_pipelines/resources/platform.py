from __future__ import annotations

from abc import abstractmethod
from pathlib import Path

import dagster as dg

from ml_pipelines.core.layout import LocalLayout
from ml_pipelines.core.registry import ModelRegistry
from ml_pipelines.core.storage import LocalObjectStore, ObjectStore


class RegistryResource(dg.ConfigurableResource):
    """Where versions and aliases live. Subclasses pick the object store."""

    @abstractmethod
    def object_store(self) -> ObjectStore: ...

    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.object_store())


class LocalRegistryResource(RegistryResource):
    root: str

    def object_store(self) -> ObjectStore:
        return LocalObjectStore(self.root)


class BentoStoreResource(dg.ConfigurableResource):
    """The BentoML home whose model store receives packaged versions."""

    home: str

    @property
    def path(self) -> Path:
        return Path(self.home)


class WorkdirResource(dg.ConfigurableResource):
    """Local folder for Data Docs and other reports written by runs."""

    root: str

    def path(self, *parts: str) -> Path:
        path = Path(self.root, *parts)
        path.mkdir(parents=True, exist_ok=True)
        return path


class PredictionLogResource(dg.ConfigurableResource):
    """Where the serving audit trail (one JSON line per prediction) is written and read."""

    root: str

    @property
    def path(self) -> Path:
        return Path(self.root)


def local_resources(root: str | Path) -> dict[str, dg.ConfigurableResource]:
    layout = LocalLayout(Path(root))
    return {
        "registry": LocalRegistryResource(root=str(layout.registry)),
        "bento_store": BentoStoreResource(home=str(layout.bentoml)),
        "workdir": WorkdirResource(root=str(layout.work)),
        "prediction_log": PredictionLogResource(root=str(layout.audit)),
    }
