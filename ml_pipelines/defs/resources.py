"""The ONLY switch between environments: ML_PIPELINES_ENV=local (default) | prod."""

import os
from pathlib import Path

import dagster as dg

from ml_pipelines.resources import local_resources


def local_home() -> Path:
    return Path(os.environ.get("ML_PIPELINES_HOME", Path.cwd() / ".ml_pipelines")).resolve()


@dg.definitions
def resources() -> dg.Definitions:
    env = os.environ.get("ML_PIPELINES_ENV", "local")
    if env == "local":
        return dg.Definitions(resources=local_resources(local_home()))
    raise dg.DagsterInvalidConfigError(
        f"ML_PIPELINES_ENV={env!r} is not supported; use 'local'", [], None
    )
