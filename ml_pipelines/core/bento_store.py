"""Where a BENTOML_HOME keeps a pipeline's BentoML models and bentos, and the lines by which the
bento build child reports what it made. Apart from core.packaging so that the model service
and that child, which import it as they start, import no sklearn for it (1.3-1.9 s here)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

RECORD_FILE = "record.json"  # the version record, shipped inside the BentoML model
BENTO_TAG_LINE = "bento tag: "  # how ml_pipelines.serving.bento reports the tag it built
MODEL_TAG_LINE = "bentoml model: "  # ... and the BentoML model it saved


@dataclass(frozen=True)
class BentoModelRef:
    tag: str
    path: str


def store_path(bentoml_home: Path, store: str, tag: str) -> Path:
    """Where BentoML keeps `name:version` in the models or bentos store of bentoml_home."""
    name, version = tag.lower().split(":")
    return bentoml_home / store / name / version


def bentoml_model_ref(bentoml_home: Path, tag: str) -> BentoModelRef:
    """The model's tag and where it is in bentoml_home (empty when this machine's store lacks it)."""
    path = store_path(bentoml_home, "models", tag)
    return BentoModelRef(tag, str(path) if path.is_dir() else "")
