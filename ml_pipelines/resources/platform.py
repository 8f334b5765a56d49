from __future__ import annotations

from abc import abstractmethod
from pathlib import Path

import dagster as dg

from ml_pipelines.core.layout import LocalLayout
from ml_pipelines.core.registry import ModelRegistry
from ml_pipelines.core.storage import LocalObjectStore, ObjectStore, S3ObjectStore


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


class S3RegistryResource(RegistryResource):
    """Registry in S3: bucket and prefix; credentials and endpoint from the standard AWS chain."""

    bucket: str
    prefix: str = "ml_pipelines"

    def object_store(self) -> ObjectStore:
        return S3ObjectStore(self.bucket, f"{self.prefix.strip('/')}/registry")


class BentoStoreResource(dg.ConfigurableResource):
    """The BentoML home whose model store receives packaged versions; with
    `export_bucket`, every built bento is also exported to S3."""

    home: str
    export_bucket: str | None = None
    export_prefix: str = "ml_pipelines"

    def export_store(self) -> ObjectStore | None:
        if not self.export_bucket:
            return None
        return S3ObjectStore(self.export_bucket, f"{self.export_prefix.strip('/')}/bentos")

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
    """Where the serving audit trail (one JSON line per prediction) and the ground truth
    clients send to /feedback are written and read."""

    root: str
    feedback_root: str = ""  # default: a `feedback` folder beside the audit trail

    @property
    def path(self) -> Path:
        return Path(self.root)

    @property
    def feedback_path(self) -> Path:
        return Path(self.feedback_root) if self.feedback_root else Path(self.root).parent / "feedback"


def local_resources(root: str | Path) -> dict[str, dg.ConfigurableResource]:
    layout = LocalLayout(Path(root))
    return {
        "registry": LocalRegistryResource(root=str(layout.registry)),
        "bento_store": BentoStoreResource(home=str(layout.bentoml)),
        "workdir": WorkdirResource(root=str(layout.work)),
        "prediction_log": PredictionLogResource(root=str(layout.audit), feedback_root=str(layout.feedback)),
    }
