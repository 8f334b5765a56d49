"""The ONLY switch between environments: ML_PIPELINES_ENV=local (default) | prod."""

import os
from pathlib import Path

import dagster as dg

from ml_pipelines.resources import local_resources

ENVIRONMENTS = ("local",)


def local_home() -> Path:
    return Path(os.environ.get("ML_PIPELINES_HOME", Path.cwd() / ".ml_pipelines")).resolve()


def platform_resources() -> dict[str, dg.ConfigurableResource]:
    env = os.environ.get("ML_PIPELINES_ENV", "local")
    if env == "local":
        return local_resources(local_home())
    raise ValueError(f"ML_PIPELINES_ENV={env!r} is not one of {', '.join(ENVIRONMENTS)}")


@dg.definitions
def resources() -> dg.Definitions:
    # specs may name ${ML_PIPELINES_HOME} in paths (the demo's landing folder)
    os.environ.setdefault("ML_PIPELINES_HOME", str(local_home()))
    return dg.Definitions(resources=platform_resources())
