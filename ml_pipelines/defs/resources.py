"""Settings -> Dagster resources and executor. Storage and execution are two settings.

Storage, Settings.environment (ML_PIPELINES_ENV):

local: registry, BentoML store, reports and the audit log under ML_PIPELINES_HOME
       (default ./.ml_pipelines); step outputs in DAGSTER_HOME/storage (LocalFrameIOManager).
prod:  step outputs (S3FrameIOManager), registry and bento exports in the bucket
       ML_PIPELINES_S3_BUCKET under ML_PIPELINES_S3_PREFIX; the endpoint follows
       boto3's AWS_ENDPOINT_URL and credentials come from the standard AWS chain.
Both IO managers are one implementation (resources/io_manager.py): DataFrames between
steps as Parquet, everything else pickled.

Execution, Settings.executor (ML_PIPELINES_EXECUTOR; in_process for local, k8s for prod):
in_process:   every step in the run worker's process. The local default: a run is already
              its own process, forked warm by the local run launcher (ml_pipelines.instance),
              so a small run costs little more than its step work.
multiprocess: one process per step, forked from a forkserver that imports the heavy
              libraries once per run (torch, scikit-learn, GX, BentoML; about 6 s here),
              so steps are isolated processes and independent steps run in parallel.
k8s:          one Kubernetes Job per step (k8s_job_executor).
"""

import tempfile
from pathlib import Path

import dagster as dg

from ml_pipelines.core.layout import LocalLayout
from ml_pipelines.resources import (
    BentoStoreResource,
    LocalFrameIOManager,
    PredictionLogResource,
    S3FrameIOManager,
    S3RegistryResource,
    WorkdirResource,
    local_resources,
)
from ml_pipelines.settings import Settings


def prod_resources(settings: Settings) -> dict[str, object]:
    # the bucket stays an EnvVar: Dagster resolves it in each step's process and never shows its value
    bucket = dg.EnvVar("ML_PIPELINES_S3_BUCKET")
    prefix = settings.s3_prefix
    scratch = Path(tempfile.gettempdir()) / "ml_pipelines"  # per pod; durable things go to S3
    return {
        "io_manager": S3FrameIOManager(bucket=bucket, prefix=f"{prefix}/io"),
        "registry": S3RegistryResource(bucket=bucket, prefix=prefix),
        "bento_store": BentoStoreResource(home=str(scratch / "bentoml"), export_bucket=bucket, export_prefix=prefix),
        "workdir": WorkdirResource(root=str(scratch / "work")),
        "prediction_log": PredictionLogResource(root=str(LocalLayout(settings.home).audit)),
    }


# imported once per run by the forkserver that forks every step's process
PRELOADED_MODULES = (
    "ml_pipelines.definitions",
    "dagster_aws.components",  # Dagster's component registry imports it each time the defs folder loads
    "ml_pipelines.core.features",  # pandas, scikit-learn
    "ml_pipelines.core.selection",
    "ml_pipelines.core.torch_model",  # torch
    "great_expectations",
    "great_expectations.expectations",
    "bentoml",
)


def fast_multiprocess_executor() -> dg.ExecutorDefinition:
    """Dagster's multiprocess executor, starting each step with forkserver and PRELOADED_MODULES."""
    start_method = {"forkserver": {"preload_modules": list(PRELOADED_MODULES)}}
    return dg.multiprocess_executor.configured({"start_method": start_method})


def platform_executor(settings: Settings) -> dg.ExecutorDefinition:
    if settings.executor == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    if settings.executor == "in_process":
        return dg.in_process_executor
    return fast_multiprocess_executor()


def platform_resources(settings: Settings) -> dict[str, object]:
    if settings.environment == "local":
        return {**local_resources(settings.home), "io_manager": LocalFrameIOManager()}
    return prod_resources(settings)


@dg.definitions
def resources() -> dg.Definitions:
    settings = Settings.from_env()
    return dg.Definitions(resources=platform_resources(settings), executor=platform_executor(settings))
