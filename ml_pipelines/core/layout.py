"""Where the local platform keeps things under ML_PIPELINES_HOME."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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
