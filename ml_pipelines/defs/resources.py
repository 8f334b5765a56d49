"""Settings -> Dagster resources. The environment switch is Settings.environment:

local: registry, BentoML store, reports and the audit log under ML_PIPELINES_HOME
       (default ./.ml_pipelines); Dagster's default filesystem IO manager.
prod:  assets (S3 pickle IO manager), registry and bento exports in the bucket
       ML_PIPELINES_S3_BUCKET under ML_PIPELINES_S3_PREFIX; the endpoint follows
       boto3's AWS_ENDPOINT_URL and credentials come from the standard AWS chain.
       Steps run as Kubernetes jobs (k8s_job_executor).
"""

import tempfile
from pathlib import Path

import dagster as dg

from ml_pipelines.core.layout import LocalLayout
from ml_pipelines.resources import (
    BentoStoreResource,
    PredictionLogResource,
    S3RegistryResource,
    WorkdirResource,
    local_resources,
)
from ml_pipelines.settings import Settings


def prod_resources(settings: Settings) -> dict[str, object]:
    from dagster_aws.s3 import S3PickleIOManager, S3Resource

    # the bucket stays an EnvVar: Dagster resolves it in each step's process and never shows its value
    bucket = dg.EnvVar("ML_PIPELINES_S3_BUCKET")
    prefix = settings.s3_prefix
    scratch = Path(tempfile.gettempdir()) / "ml_pipelines"  # per pod; durable things go to S3
    return {
        "io_manager": S3PickleIOManager(s3_resource=S3Resource(), s3_bucket=bucket, s3_prefix=f"{prefix}/io"),
        "registry": S3RegistryResource(bucket=bucket, prefix=prefix),
        "bento_store": BentoStoreResource(home=str(scratch / "bentoml"), export_bucket=bucket, export_prefix=prefix),
        "workdir": WorkdirResource(root=str(scratch / "work")),
        "prediction_log": PredictionLogResource(root=str(LocalLayout(settings.home).audit)),
    }


def platform_resources(settings: Settings) -> dict[str, object]:
    return local_resources(settings.home) if settings.environment == "local" else prod_resources(settings)


@dg.definitions
def resources() -> dg.Definitions:
    settings = Settings.from_env()
    if settings.environment == "local":
        return dg.Definitions(resources=platform_resources(settings))
    from dagster_k8s import k8s_job_executor

    return dg.Definitions(resources=platform_resources(settings), executor=k8s_job_executor)
