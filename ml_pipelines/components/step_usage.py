"""Every asset materialization carries what its step used: `record_step_usage` wraps an asset's
compute function (policies.fail_fast_on_bad_input applies it to every asset) in a
core.usage.UsageSampler, and adds the figures to the output's metadata as numbers, so that
Dagster's Plots tab charts them across runs:

    usage/wall_s, usage/cpu_s, usage/cpu_utilisation_pct, usage/cpu_peak_cores, usage/peak_rss_mib;
    with a GPU: usage/gpus, usage/gpu_utilisation_pct, usage/gpu_peak_memory_mib;
    what the step's Kubernetes pod requests (its dagster-k8s/config tag), where it has one:
    usage/requested_cpu_cores, usage/requested_memory_mib, usage/requested_gpus;
    usage/owners: the asset's owners (text), whom `ml-pipelines usage --by owner` charges.

The measurement covers the compute function up to its output: for a generator, from its
start to the yielded Output (the IO manager's storing of that output is the step's, not
the function's, and is not in it). Asset checks are not measured. ML_PIPELINES_USAGE_INTERVAL=0
turns it off.
"""

from __future__ import annotations

import functools
import inspect
import json
from typing import Any

import dagster as dg

from ml_pipelines.components import metadata as md
from ml_pipelines.core.usage import OWNERS, StepUsage, UsageSampler, requested_figures
from ml_pipelines.settings import Settings

K8S_CONFIG_TAG = "dagster-k8s/config"


def _asset_context(args: tuple[Any, ...]) -> dg.AssetExecutionContext | None:
    return next((a for a in args if isinstance(a, dg.AssetExecutionContext)), None)


def _sampler(args: tuple[Any, ...]) -> tuple[dg.AssetExecutionContext, UsageSampler] | None:
    """A started sampler for an asset step, or None (a check, or usage turned off)."""
    context = _asset_context(args)
    interval = Settings.from_env().usage_interval_s
    if context is None or interval <= 0:
        return None
    return context, UsageSampler(interval).start()


def pod_requests(context: dg.AssetExecutionContext) -> dict[str, Any]:
    """The container `resources.requests` of the step's dagster-k8s/config op tag; {} without one."""
    config = context.op_execution_context.op_def.tags.get(K8S_CONFIG_TAG)
    if isinstance(config, str):
        config = json.loads(config)
    return ((config or {}).get("container_config") or {}).get("resources", {}).get("requests") or {}


def usage_metadata(context: dg.AssetExecutionContext, usage: StepUsage) -> dict[str, Any]:
    requests = pod_requests(context)
    numbers = {**usage.figures(), **(requested_figures(requests) if requests else {})}
    metadata: dict[str, Any] = {key: md.number(value) for key, value in numbers.items()}
    owners = context.assets_def.specs_by_key[context.asset_key].owners
    if owners:
        metadata[OWNERS] = ", ".join(owners)
    return metadata


def _add_usage(context: dg.AssetExecutionContext, sampler: UsageSampler, output_name: str | None = None) -> None:
    context.add_output_metadata(usage_metadata(context, sampler.stop()), output_name=output_name)


def record_step_usage(fn):
    """fn (an asset's compute function, plain or generator), its output carrying the step's usage."""

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generator_wrapper(*args, **kwargs):
            measured = _sampler(args)
            if measured is None:
                yield from fn(*args, **kwargs)
                return
            context, sampler = measured
            try:
                for event in fn(*args, **kwargs):
                    if sampler.usage is None and isinstance(event, (dg.Output, dg.MaterializeResult)):
                        _add_usage(context, sampler, getattr(event, "output_name", None))
                    yield event
            finally:
                sampler.stop()

        return generator_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        measured = _sampler(args)
        if measured is None:
            return fn(*args, **kwargs)
        context, sampler = measured
        try:
            result = fn(*args, **kwargs)
        finally:
            sampler.stop()
        _add_usage(context, sampler, getattr(result, "output_name", None))
        return result

    return wrapper
