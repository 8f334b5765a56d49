"""The bento build itself, run as `python -m ml_pipelines.serving.bento <pipeline> <version>`
by core.packaging.build_bento: offline (lock_packages: false), in a subprocess
because it imports the service module, which reads its configuration on import
(and declares, through @bentoml.service(envs=...), the environment the bento serves with).
"""

from __future__ import annotations

import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
RUNTIME_PACKAGES = [
    "bentoml", "pandas", "numpy", "scikit-learn", "skops", "torch", "pydantic", "scipy", "pyyaml",
]


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
    from ml_pipelines.core.packaging import BENTO_TAG_LINE

    print(f"{BENTO_TAG_LINE}{_build(sys.argv[1], sys.argv[2])}")
