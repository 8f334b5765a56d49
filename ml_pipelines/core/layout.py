"""Where the platform keeps things: folders under ML_PIPELINES_HOME, and the registry
that the settings point at (local folder or S3)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ml_pipelines.core.registry import ModelRegistry
from ml_pipelines.core.storage import LocalObjectStore, S3ObjectStore
from ml_pipelines.settings import Settings


@dataclass(frozen=True)
class LocalLayout:
    home: Path

    @property
    def registry(self) -> Path:
        return self.home / "registry"

    @property
    def bentoml(self) -> Path:
        return self.home / "bentoml"

    @property
    def work(self) -> Path:
        return self.home / "work"

    @property
    def audit(self) -> Path:
        return self.home / "audit"

    @property
    def feedback(self) -> Path:
        return self.home / "feedback"


def registry_for(settings: Settings) -> ModelRegistry:
    """The registry outside a Dagster run (command line, service): local files, or S3 in prod."""
    if settings.environment == "local":
        return ModelRegistry(LocalObjectStore(LocalLayout(settings.home).registry))
    return ModelRegistry(S3ObjectStore(settings.require_bucket(), f"{settings.s3_prefix}/registry"))
