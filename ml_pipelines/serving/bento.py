"""Build a bento for one packaged version, offline (lock_packages: false).

The build imports the service module, which reads its configuration from the
environment, so it runs in a subprocess with that environment set.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
RUNTIME_PACKAGES = [
    "bentoml", "pandas", "numpy", "scikit-learn", "skops", "torch", "pydantic", "scipy", "pyyaml",
]


def build_bento(pipeline: str, version: str, *, bentoml_home: Path, timeout: float = 600) -> str:
    """Build `<pipeline>:<version>` into bentoml_home's bento store; returns the bento tag."""
    env = {
        **os.environ,
        "ML_PIPELINES_SERVE_PIPELINE": pipeline,
        "ML_PIPELINES_SERVE_VERSION": version,
        "ML_PIPELINES_SERVE_FROM": "bento",  # the record ships inside the BentoML model
        "BENTOML_HOME": str(bentoml_home),
        "BENTOML_DO_NOT_TRACK": "True",
    }
    result = subprocess.run(
        [sys.executable, "-m", "ml_pipelines.serving.bento", pipeline, version],
        env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout,
    )
    if result.returncode != 0:
        raise RuntimeError(f"bento build for {pipeline}:{version} failed:\n{result.stderr[-3000:]}")
    return result.stdout.strip().splitlines()[-1]


def export_bento(tag: str, *, bentoml_home: Path, timeout: float = 600) -> bytes:
    """The bento as one archive (what `bentoml import` reads back)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bento-export-") as tmp:
        target = Path(tmp) / "bento.bento"
        env = {**os.environ, "BENTOML_HOME": str(bentoml_home), "BENTOML_DO_NOT_TRACK": "True"}
        result = subprocess.run(
            [sys.executable, "-m", "bentoml", "export", tag, str(target)],
            env=env, capture_output=True, text=True, timeout=timeout,
        )
        if result.returncode != 0:
            raise RuntimeError(f"bentoml export {tag} failed:\n{result.stderr[-3000:]}")
        return target.read_bytes()


def _build(pipeline: str, version: str) -> str:
    import bentoml
    from bentoml._internal.bento.build_config import BentoEnvSchema

    bento = bentoml.bentos.build(
        "ml_pipelines.serving.service:ModelService",
        name=pipeline.replace("_", "-"),
        version=version,
        labels={"pipeline": pipeline, "version": version},
        description=f"{pipeline} model {version}, served by ml_pipelines",
        include=["ml_pipelines/**/*.py", "ml_pipelines/**/*.yaml"],
        exclude=["ml_pipelines/defs/**", "**/__pycache__"],
        python={"packages": RUNTIME_PACKAGES, "lock_packages": False},
        envs=[
            BentoEnvSchema(name="ML_PIPELINES_SERVE_PIPELINE", value=pipeline),
            BentoEnvSchema(name="ML_PIPELINES_SERVE_VERSION", value=version),
            BentoEnvSchema(name="ML_PIPELINES_SERVE_FROM", value="bento"),
        ],
        models=[f"{pipeline}:{version}"],
        build_ctx=str(PROJECT_ROOT),
    )
    return str(bento.tag)


if __name__ == "__main__":
    print(_build(sys.argv[1], sys.argv[2]))
