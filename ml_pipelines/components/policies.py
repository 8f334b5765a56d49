"""How every step runs: Kubernetes step-pod resources (dagster-k8s op tags), the training
concurrency pools, the run-time limit and team run tags, the idle watchdog, the retry policy
for transient failures, and fail-fast for deterministic ones."""

import contextlib
import functools
import inspect
import signal
import threading
from collections.abc import Iterator
from typing import Any

import dagster as dg
from dagster._core.errors import DagsterExecutionInterruptedError  # what an interrupt raises in a step
from dagster._core.storage.tags import MAX_RUNTIME_SECONDS_TAG as MAX_RUNTIME_TAG  # "dagster/max_runtime"

from ml_pipelines.components.step_usage import record_step_usage
from ml_pipelines.core.errors import InputError
from ml_pipelines.core.idle import IdleVerdict, IdleWatchdog
from ml_pipelines.core.memory import step_memory
from ml_pipelines.instance import PIPELINE_TAG, TEAM_TAG, team_of
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
GPU_POOL = "gpu"  # training with resources.train.gpu > 0
TRAIN_POOL = "train"  # every other training step: instance `concurrency.pools` bounds how many run at once
DEFAULT_OWNER = "team:ml-platform"  # definitions.py gives it to every asset whose spec names no owner
IDLE_TIMEOUT_TAG = "ml_pipelines/idle_timeout_s"  # op tag: resources.<stage>.idle_timeout in seconds
GPU_TAG = "ml_pipelines/gpu"  # op tag: the GPUs the stage asked for, so the idle watchdog watches them too
MAX_RUNTIME_OP_TAG = "ml_pipelines/max_runtime_s"  # op tag: resources.<stage>.max_runtime in seconds
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
    resources = spec.resources.get(STAGE_OF_ASSET[asset])
    tags: dict[str, Any] = {"dagster-k8s/config": k8s_config(resources)}
    if resources is not None and resources.max_runtime is not None:
        tags[MAX_RUNTIME_OP_TAG] = str(resources.seconds("max_runtime"))
    if resources is not None and resources.idle_timeout is not None:
        tags[IDLE_TIMEOUT_TAG] = str(resources.seconds("idle_timeout"))
        if resources.gpu:
            tags[GPU_TAG] = str(resources.gpu)
    return tags


def stage_pool(spec: PipelineSpec, asset: str) -> str | None:
    """Training runs in a pool (`gpu` when it asks for a GPU, else `train`), so the instance's
    `concurrency.pools` bounds how many training steps run at once; other stages in none."""
    if STAGE_OF_ASSET[asset] != "train":
        return None
    resources = spec.resources.get("train")
    return GPU_POOL if resources is not None and resources.gpu else TRAIN_POOL


def run_tags(spec: PipelineSpec, stages: tuple[str, ...]) -> dict[str, str]:
    """The run tags of a pipeline job over `stages` (asset names): the pipeline, the team (the
    spec's first owner, `team:` dropped) and, when any of its stages sets resources.max_runtime,
    Dagster's `dagster/max_runtime`: the sum over the job's stages, since its steps run one after
    another (a stage without a limit adds nothing)."""
    tags = {PIPELINE_TAG: spec.name, TEAM_TAG: team_of(spec.owners or [DEFAULT_OWNER])}
    limits = [r.seconds("max_runtime") for s in stages if (r := spec.resources.get(STAGE_OF_ASSET[s]))]
    if any(limits):
        tags[MAX_RUNTIME_TAG] = str(sum(limit for limit in limits if limit))
    return tags


def _fail_now(exc: InputError) -> dg.Failure:
    return dg.Failure(description=f"{type(exc).__name__}: {exc}", allow_retries=False)


def _context(args: tuple[Any, ...]) -> Any:
    return next((a for a in args if isinstance(a, (dg.AssetExecutionContext, dg.AssetCheckExecutionContext,
                                                    dg.OpExecutionContext))), None)


def _terminated(args: tuple[Any, ...]) -> dg.Failure | None:
    """A no-retry Failure when the step's run is being terminated, else None.

    A termination interrupts the step (SIGINT), and Dagster retries an interrupted step that
    has a retry policy (so a preempted Kubernetes pod is retried). Under the in-process
    executor that retry would carry on the run the user asked to stop, so an interrupt
    while the run is CANCELING fails the step for good and Dagster ends the run CANCELED.
    Run monitoring's max_runtime marks the run FAILURE as it terminates it: same answer.
    A step (or a retry) that starts while its run is CANCELING fails the same way: the
    interrupt may land in Dagster's code around the step, which retries without us."""
    context = _context(args)
    if context is None:
        return None
    run = context.instance.get_run_by_id(context.run.run_id)
    if run is None or not (run.status == dg.DagsterRunStatus.CANCELING or run.is_finished):
        return None
    return dg.Failure(description="the run was terminated (by request, or by run monitoring past the run's "
                      "dagster/max_runtime) while this step ran", allow_retries=False)


def _limit_untagged_run(args: tuple[Any, ...]) -> None:
    """Give a run that carries no dagster/max_runtime the limit a pipeline job's run gets at launch:
    the sum of resources.<stage>.max_runtime over the run's own steps. The UI's "Materialize"
    button launches Dagster's implicit asset job, whose runs carry no job tags; its first step
    tags the run here. Run monitoring reads a run's tags on every poll and measures from the
    run's start, so the limit holds from then on, for any launcher and executor."""
    context = _context(args)
    run = context.instance.get_run_by_id(context.run.run_id) if context is not None else None
    if run is None or MAX_RUNTIME_TAG in run.tags:
        return
    op_context = context.op_execution_context
    selected = run.step_keys_to_execute  # a re-execution of some steps: only those
    limits = [int(node.definition.tags[MAX_RUNTIME_OP_TAG]) for node in op_context.job_def.nodes
              if MAX_RUNTIME_OP_TAG in node.definition.tags and (selected is None or node.name in selected)]
    if limits:
        context.instance.add_run_tags(run.run_id, {MAX_RUNTIME_TAG: str(sum(limits))})


def _interrupt_step(verdict: IdleVerdict) -> None:
    """Interrupt the main thread, where the step runs, as a termination would: a real SIGINT sent
    to that thread, which also wakes a step blocked in a sleep or a read (`_thread.interrupt_main`
    only runs the handler once the thread is back in Python)."""
    signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)


@contextlib.contextmanager
def ended_when_idle(args: tuple[Any, ...]) -> Iterator[None]:
    """Run the block under an IdleWatchdog when the step's op tags carry an idle timeout
    (resources.<stage>.idle_timeout): an idle step is interrupted and fails, without retries,
    with the watchdog's reason (the step, the measured utilisation and the limit)."""
    context = _context(args)
    tags = context.op_execution_context.op_def.tags if context is not None else {}
    if IDLE_TIMEOUT_TAG not in tags or threading.current_thread() is not threading.main_thread():
        yield
        return
    watchdog = IdleWatchdog(float(tags[IDLE_TIMEOUT_TAG]), _interrupt_step, watch_gpu=GPU_TAG in tags).start()
    try:
        yield
    except (KeyboardInterrupt, DagsterExecutionInterruptedError) as exc:
        if watchdog.verdict is None:
            raise
        step = str(context.op_execution_context.op_handle)
        stage = STAGE_OF_ASSET.get(step.rsplit("__", 1)[-1], "<stage>")
        raise dg.Failure(description=watchdog.verdict.reason(step, f"resources.{stage}.idle_timeout"),
                         allow_retries=False) from exc
    finally:
        watchdog.stop()


def fail_fast_on_bad_input(fn=None, *, reuse_memory: bool = True):
    """Errors that a retry cannot fix (bad data, a bad spec, a checksum mismatch, a failed
    gate: every core.errors.InputError) fail the step at once, with the original message,
    instead of being retried; so do a termination (see _terminated) and an idle step
    (ended_when_idle). A run without a run-time limit gets its steps' (_limit_untagged_run).
    Every asset's output carries what its step used (step_usage.record_step_usage). The body runs
    in core.memory.step_memory: with reuse_memory, large frames reuse the memory the step frees.
    Use bare (@fail_fast_on_bad_input) or with the keyword (@fail_fast_on_bad_input(reuse_memory=False))."""
    if fn is None:
        return functools.partial(fail_fast_on_bad_input, reuse_memory=reuse_memory)
    fn = record_step_usage(fn)
    memory = functools.partial(step_memory, reuse_freed=reuse_memory)

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generator_wrapper(*args, **kwargs):
            if stop := _terminated(args):
                raise stop
            _limit_untagged_run(args)
            try:
                with ended_when_idle(args), memory():
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
        _limit_untagged_run(args)
        try:
            with ended_when_idle(args), memory():
                return fn(*args, **kwargs)
        except InputError as exc:
            raise _fail_now(exc) from exc
        except (KeyboardInterrupt, DagsterExecutionInterruptedError) as exc:
            raise (_terminated(args) or exc) from exc

    return wrapper
