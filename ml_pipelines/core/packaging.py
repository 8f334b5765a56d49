"""Put a registered version into the BentoML model store, tagged with its version."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class BentoModelRef:
    tag: str
    path: str


def model_store(bentoml_home: Path):
    # BentoML reads BENTOML_HOME once per process; an explicit store lets one
    # process (tests, the demo) write to the home its resource names.
    from bentoml._internal.models import ModelStore

    models = bentoml_home / "models"
    models.mkdir(parents=True, exist_ok=True)
    return ModelStore(models)


def save_bentoml_model(
    pipeline: str,
    version: str,
    artifact_dir: Path,
    *,
    bentoml_home: Path,
    labels: dict[str, str],
    metadata: dict[str, Any],
) -> BentoModelRef:
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    import bentoml

    store = model_store(bentoml_home)
    tag = f"{pipeline}:{version}"
    with bentoml.models.create(
        tag, labels=labels, metadata=metadata, module="ml_pipelines.serving", _model_store=store
    ) as model:
        for path in artifact_dir.rglob("*"):
            if path.is_file():
                target = Path(model.path) / path.relative_to(artifact_dir)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
    stored = store.get(tag)
    return BentoModelRef(str(stored.tag), str(stored.path))
