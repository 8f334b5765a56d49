"""How every step runs: Kubernetes step-pod resources (dagster-k8s op tags), the GPU
concurrency pool, the retry policy for transient failures, and fail-fast for
deterministic ones."""

import functools
import inspect
from typing import Any

import dagster as dg
from dagster._core.errors import DagsterExecutionInterruptedError  # what an interrupt raises in a step

from ml_pipelines.components.step_usage import record_step_usage
from ml_pipelines.core.errors import InputError
from ml_pipelines.spec import PipelineSpec, StageResources

# spec stage name -> asset
STAGE_OF_ASSET = {
    "raw_data": "ingest",
    "validated_data": "validate",
    "features": "features",
    "trained_model": "train",
    "evaluation": "evaluate",
    "model_package": "package",
}
DEFAULT_REQUESTS = {"cpu": "500m", "memory": "1Gi"}
# run tags that say why a retrain ran; the version record keeps them (core.records.Trigger)
RETRAIN_REASON_TAG = "ml_pipelines/retrain_reason"  # drift | performance | schedule
REASON_DETAIL_TAG = "ml_pipelines/reason"  # the sensor's words
GPU_POOL = "gpu"
# transient failures (an S3 blip, a preempted pod) are retried with backoff;
# deterministic ones (core.errors.InputError) fail at once through fail_fast_on_bad_input
RETRY_POLICY = dg.RetryPolicy(max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


def k8s_config(resources: StageResources | None) -> dict[str, Any]:
    """The `dagster-k8s/config` tag for one stage. A tag's `resources` replaces the
    executor's default rather than merging, so requests and limits are always both set."""
    requests = dict(DEFAULT_REQUESTS)
    if resources is not None:
        if resources.cpu:
            requests["cpu"] = resources.cpu
        if resources.memory:
            requests["memory"] = resources.memory
    limits = dict(requests)
    config: dict[str, Any] = {"container_config": {"resources": {"requests": requests, "limits": limits}}}
    if resources is not None and resources.gpu:
        limits["nvidia.com/gpu"] = str(resources.gpu)
        requests["nvidia.com/gpu"] = str(resources.gpu)
        config["pod_spec_config"] = {
            "node_selector": {"nvidia.com/gpu.present": "true"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        }
    return config


def stage_op_tags(spec: PipelineSpec, asset: str) -> dict[str, Any]:
    return {"dagster-k8s/config": k8s_config(spec.resources.get(STAGE_OF_ASSET[asset]))}


def stage_pool(spec: PipelineSpec, asset: str) -> str | None:
    resources = spec.resources.get(STAGE_OF_ASSET[asset])
    return GPU_POOL if resources is not None and resources.gpu else None


def _fail_now(exc: InputError) -> dg.Failure:
    return dg.Failure(description=f"{type(exc).__name__}: {exc}", allow_retries=False)


def _terminated(args: tuple[Any, ...]) -> dg.Failure | None:
    """A no-retry Failure when the step's run is being terminated, else None.

    A termination interrupts the step (SIGINT), and Dagster retries an interrupted step that
    has a retry policy (so a preempted Kubernetes pod is retried). Under the in-process
    executor that retry would carry on the run the user asked to stop, so an interrupt
    while the run is CANCELING fails the step for good and Dagster ends the run CANCELED.
    A step (or a retry) that starts while its run is CANCELING fails the same way: the
    interrupt may land in Dagster's code around the step, which retries without us."""
    context = next((a for a in args if isinstance(a, (dg.AssetExecutionContext, dg.AssetCheckExecutionContext,
                                                       dg.OpExecutionContext))), None)
    if context is None:
        return None
    run = context.instance.get_run_by_id(context.run.run_id)
    if run is None or run.status != dg.DagsterRunStatus.CANCELING:
        return None
    return dg.Failure(description="the run was terminated by request", allow_retries=False)


def fail_fast_on_bad_input(fn):
    """Errors that a retry cannot fix (bad data, a bad spec, a checksum mismatch, a failed
    gate: every core.errors.InputError) fail the step at once, with the original message,
    instead of being retried; so does a termination (see _terminated). Every asset's output
    carries what its step used (step_usage.record_step_usage)."""
    fn = record_step_usage(fn)

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generator_wrapper(*args, **kwargs):
            if stop := _terminated(args):
                raise stop
            try:
                yield from fn(*args, **kwargs)
            except InputError as exc:
                raise _fail_now(exc) from exc
            except (KeyboardInterrupt, DagsterExecutionInterruptedError) as exc:
                raise (_terminated(args) or exc) from exc

        return generator_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if stop := _terminated(args):
            raise stop
        try:
            return fn(*args, **kwargs)
        except InputError as exc:
            raise _fail_now(exc) from exc
        except (KeyboardInterrupt, DagsterExecutionInterruptedError) as exc:
            raise (_terminated(args) or exc) from exc

    return wrapper
