"""The ONLY switch between environments: ML_PIPELINES_ENV=local (default) | prod.

local: registry, BentoML store, reports and the audit log under ML_PIPELINES_HOME
       (default ./.ml_pipelines); Dagster's default filesystem IO manager.
prod:  assets (S3 pickle IO manager), registry and bento exports in the bucket
       ML_PIPELINES_S3_BUCKET under ML_PIPELINES_S3_PREFIX; the endpoint follows
       boto3's AWS_ENDPOINT_URL and credentials come from the standard AWS chain.
       Steps run as Kubernetes jobs (k8s_job_executor).
"""

import os
import tempfile
from pathlib import Path

import dagster as dg

from ml_pipelines.core.registry import ModelRegistry
from ml_pipelines.core.storage import S3ObjectStore
from ml_pipelines.resources import (
    BentoStoreResource,
    PredictionLogResource,
    S3RegistryResource,
    WorkdirResource,
    local_resources,
)

ENVIRONMENTS = ("local", "prod")


def environment() -> str:
    env = os.environ.get("ML_PIPELINES_ENV", "local")
    if env not in ENVIRONMENTS:
        raise ValueError(f"ML_PIPELINES_ENV={env!r} is not one of {', '.join(ENVIRONMENTS)}")
    return env


def local_home() -> Path:
    return Path(os.environ.get("ML_PIPELINES_HOME", Path.cwd() / ".ml_pipelines")).resolve()


def s3_prefix() -> str:
    return os.environ.get("ML_PIPELINES_S3_PREFIX", "ml_pipelines").strip("/")


def prod_resources() -> dict[str, object]:
    from dagster_aws.s3 import S3PickleIOManager, S3Resource

    bucket = dg.EnvVar("ML_PIPELINES_S3_BUCKET")
    scratch = Path(tempfile.gettempdir()) / "ml_pipelines"  # per pod; durable things go to S3
    return {
        "io_manager": S3PickleIOManager(s3_resource=S3Resource(), s3_bucket=bucket, s3_prefix=f"{s3_prefix()}/io"),
        "registry": S3RegistryResource(bucket=bucket, prefix=s3_prefix()),
        "bento_store": BentoStoreResource(home=str(scratch / "bentoml"), export_bucket=bucket, export_prefix=s3_prefix()),
        "workdir": WorkdirResource(root=str(scratch / "work")),
        "prediction_log": PredictionLogResource(root=str(local_home() / "audit")),
    }


def platform_resources() -> dict[str, object]:
    return local_resources(local_home()) if environment() == "local" else prod_resources()


def registry_from_env() -> ModelRegistry:
    """The registry for command-line tools, outside a Dagster run."""
    if environment() == "local":
        return local_resources(local_home())["registry"].registry()
    return ModelRegistry(S3ObjectStore(os.environ["ML_PIPELINES_S3_BUCKET"], f"{s3_prefix()}/registry"))


@dg.definitions
def resources() -> dg.Definitions:
    # specs may name ${ML_PIPELINES_HOME} in paths (the demo's landing folder)
    os.environ.setdefault("ML_PIPELINES_HOME", str(local_home()))
    if environment() == "local":
        return dg.Definitions(resources=platform_resources())
    from dagster_k8s import k8s_job_executor

    return dg.Definitions(resources=platform_resources(), executor=k8s_job_executor)
