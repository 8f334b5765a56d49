"""The BentoML model and the bento build, run as
`python -m ml_pipelines.serving.bento <pipeline> <version> [<artifact dir> <model details json>]`
by core.packaging.build_bento: offline (lock_packages: false), in a subprocess because
the build imports the service module, which reads its configuration on import (and declares,
through @bentoml.service(envs=...), the environment the bento serves with), and because
BentoML's public API writes to the store of the process's BENTOML_HOME. With an artifact
directory the model is saved first (bentoml.models.create), then the bento is built.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
RUNTIME_PACKAGES = [
    "bentoml", "pandas", "numpy", "scikit-learn", "skops", "torch", "pydantic", "scipy", "pyyaml",
]


def _save_model(pipeline: str, version: str, artifact_dir: Path, details: Path) -> str:
    """`<pipeline>:<version>` in the BentoML model store, holding every artifact; details: labels, metadata."""
    import bentoml

    described = json.loads(details.read_text())
    with bentoml.models.create(
        f"{pipeline}:{version}", labels=described["labels"], metadata=described["metadata"],
        module="ml_pipelines.serving",
    ) as model:
        for path in artifact_dir.rglob("*"):
            if path.is_file():
                target = Path(model.path) / path.relative_to(artifact_dir)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
    return str(model.tag)


def _build(pipeline: str, version: str) -> str:
    import bentoml

    bento = bentoml.bentos.build(
        "ml_pipelines.serving.service:ModelService",
        name=pipeline.replace("_", "-"),
        version=version,
        labels={"pipeline": pipeline, "version": version},
        description=f"{pipeline} model {version}, served by ml_pipelines",
        include=["ml_pipelines/**/*.py", "ml_pipelines/**/*.yaml"],
        exclude=["ml_pipelines/defs/**", "**/__pycache__"],
        python={"packages": RUNTIME_PACKAGES, "lock_packages": False},
        models=[f"{pipeline}:{version}"],
        build_ctx=str(PROJECT_ROOT),
    )
    return str(bento.tag)


if __name__ == "__main__":
    from ml_pipelines.core.packaging import BENTO_TAG_LINE, MODEL_TAG_LINE

    if len(sys.argv) == 5:
        print(f"{MODEL_TAG_LINE}{_save_model(sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]))}")
    print(f"{BENTO_TAG_LINE}{_build(sys.argv[1], sys.argv[2])}")
