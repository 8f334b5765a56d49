"""components/policies.py: the run tags and pools a spec's resources become, and the idle
watchdog ending a step that does nothing (in a fresh process; under a real daemon in test_dagster_dev)."""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import dagster as dg
import pytest
from pydantic import ValidationError

from ml_pipelines.components import build_pipeline_defs
from ml_pipelines.components.policies import GPU_POOL, TRAIN_POOL, run_tags, stage_pool
from ml_pipelines.definitions import apply_policies
from ml_pipelines.resources.platform import local_resources
from ml_pipelines_tests.helpers import materialize
from ml_pipelines_tests.ops_location import ops_attributes
from ml_pipelines_tests.specs import make_spec

CHAIN = ("raw_data", "validated_data", "features", "trained_model", "evaluation", "model_package")


def test_a_jobs_max_runtime_is_the_sum_over_its_stages_and_its_team_the_first_owner():
    spec = make_spec(**ops_attributes("p", resources={"ingest": {"max_runtime": "15s"}, "train": {"max_runtime": "2h"},
                                                      "package": {"cpu": "1"}}))
    assert run_tags(spec, CHAIN) == {"pipeline": "p", "team": "p", "dagster/max_runtime": str(15 + 2 * 3600)}
    assert run_tags(spec, CHAIN[2:])["dagster/max_runtime"] == "7200"  # a partitioned source's retrain job
    assert run_tags(spec, ("raw_data", "validated_data"))["dagster/max_runtime"] == "15"


def test_a_run_of_the_implicit_asset_job_gets_the_max_runtime_of_its_selected_steps(platform_root):
    """The UI's Materialize button runs Dagster's implicit asset job, which has no job tags: the
    run's first step tags it with the sum over the selected steps, as a pipeline job's run is."""
    spec = make_spec(**ops_attributes("p", resources={"ingest": {"max_runtime": "15s"}, "validate": {"max_runtime": "1m"},
                                                      "train": {"max_runtime": "2h"}}))
    defs = dg.Definitions.merge(apply_policies(build_pipeline_defs(spec)),
                                dg.Definitions(resources=local_resources(platform_root)))
    job = defs.resolve_implicit_global_asset_job_def()
    with dg.instance_for_test() as instance:
        ingest_only = job.execute_in_process(instance=instance, asset_selection=[dg.AssetKey(["p", "raw_data"])])
        two_steps = job.execute_in_process(
            instance=instance, asset_selection=[dg.AssetKey(["p", "raw_data"]), dg.AssetKey(["p", "validated_data"])])
        assert instance.get_run_by_id(ingest_only.run_id).tags["dagster/max_runtime"] == "15"
        assert instance.get_run_by_id(two_steps.run_id).tags["dagster/max_runtime"] == str(15 + 60)
        unlimited = make_spec(**ops_attributes("q"))
        plain = dg.Definitions.merge(apply_policies(build_pipeline_defs(unlimited)),
                                     dg.Definitions(resources=local_resources(platform_root)))
        run = plain.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, asset_selection=[dg.AssetKey(["q", "raw_data"])])
        assert "dagster/max_runtime" not in instance.get_run_by_id(run.run_id).tags


def test_a_spec_without_limits_or_owners_sets_no_max_runtime_and_the_default_team():
    attributes = ops_attributes("p")
    attributes["owners"] = []
    assert run_tags(make_spec(**attributes), CHAIN) == {"pipeline": "p", "team": "ml-platform"}
    attributes["owners"] = ["jo@example.com", "team:x"]
    assert run_tags(make_spec(**attributes), CHAIN)["team"] == "jo@example.com"


def test_training_runs_in_the_train_pool_or_the_gpu_pool_and_nothing_else_in_a_pool():
    assert stage_pool(make_spec(**ops_attributes("p")), "trained_model") == TRAIN_POOL
    gpu = make_spec(**ops_attributes("p", resources={"train": {"gpu": 1}}))
    assert stage_pool(gpu, "trained_model") == GPU_POOL
    assert {stage_pool(gpu, s) for s in CHAIN if s != "trained_model"} == {None}


@pytest.mark.parametrize("field", ["max_runtime", "idle_timeout"])
def test_a_limit_that_is_not_a_duration_is_refused_naming_its_field(field):
    with pytest.raises(ValidationError, match=rf"resources\.train\.{field}\n.*'ten minutes' is not a duration"):
        make_spec(**ops_attributes("p", resources={"train": {field: "ten minutes"}}))


def _materialize_alone(spec, root: Path) -> dict:
    """materialize() in a fresh process, as a run worker runs a run: the idle watchdog counts the
    CPU of the step's process and its children, and a test worker's children (the session's
    PostgreSQL, S3 server or browser, started by earlier tests) would count as the step's."""
    started = time.monotonic()
    result = materialize(spec, root)
    return {
        "seconds": time.monotonic() - started,
        "success": result.success,
        "errors": result.step_errors(),
        "retried": [e.event_type_value for e in result.result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"],
        "materialized": result.materialized(),
        "versions": result.registry.list_versions(spec.name),
    }


@pytest.mark.timeout(120)
def test_an_idle_step_is_ended_and_fails_without_retries_naming_itself(platform_root):
    spec = make_spec(**ops_attributes("sleepy", sleep_s=60, resources={"ingest": {"idle_timeout": "2s"}}))
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        run = pool.submit(_materialize_alone, spec, platform_root).result()
    assert run["seconds"] < 30  # not the 60 s the generator sleeps
    assert not run["success"]
    errors = run["errors"]
    assert len(errors) == 1 and "step sleepy__raw_data was idle for 2s" in errors[0], errors
    assert "its limit is resources.ingest.idle_timeout = 2s" in errors[0]
    assert run["retried"] == []
    assert run["materialized"] == set() and run["versions"] == []


class _Graph:
    """Stands in for the workspace's asset graph: asset key -> node with tags and owners."""

    def __init__(self, nodes: dict[str, tuple[str | None, list[str]]]):
        from types import SimpleNamespace

        self.nodes = {dg.AssetKey(k): SimpleNamespace(tags={"pipeline": p} if p else {}, owners=o)
                      for k, (p, o) in nodes.items()}

    def has(self, key):
        return key in self.nodes

    def get(self, key):
        return self.nodes[key]


def test_a_ui_runs_queue_tags_come_from_its_assets_only_when_they_all_agree():
    from ml_pipelines.instance import _tags_of_assets

    graph = _Graph({"a1": ("a", ["team:red", "jo@x.com"]), "a2": ("a", ["team:red"]), "b1": ("b", ["team:blue"]),
                    "c1": ("c", ["team:red"]), "loose": (None, [])})
    keys = [dg.AssetKey(k) for k in ("a1", "a2")]
    assert _tags_of_assets(graph, keys) == {"pipeline": "a", "team": "red"}
    assert _tags_of_assets(graph, [dg.AssetKey("a1"), dg.AssetKey("c1")]) == {"team": "red"}
    assert _tags_of_assets(graph, [dg.AssetKey("a1"), dg.AssetKey("b1")]) == {}
    assert _tags_of_assets(graph, [dg.AssetKey("a1"), dg.AssetKey("loose")]) == {}
    assert _tags_of_assets(graph, [dg.AssetKey("gone")]) == {}


def test_a_step_runs_on_small_pages_reusing_freed_memory_and_gives_it_back_at_its_end_unless_it_opts_out(
    monkeypatch,
):
    import contextlib

    from ml_pipelines.components import policies
    from ml_pipelines.core import memory

    events: list[str] = []

    def recorded(enter: str, leave: str):
        @contextlib.contextmanager
        def context():
            events.append(enter)
            yield
            events.append(leave)

        return context

    monkeypatch.setattr(memory, "reused_freed_memory", recorded("keep", "release"))
    monkeypatch.setattr(memory, "small_pages_for_arrays", recorded("small pages", "pages as before"))

    @policies.fail_fast_on_bad_input
    def step():
        events.append("step")
        return 1

    @policies.fail_fast_on_bad_input
    def generator_step():
        events.append("step")
        yield 1

    @policies.fail_fast_on_bad_input(reuse_memory=False)
    def fitting_step():
        events.append("fit")
        return 2

    assert step() == 1
    assert list(generator_step()) == [1]
    assert fitting_step() == 2
    assert events == ["small pages", "keep", "step", "release", "pages as before"] * 2 + [
        "small pages", "fit", "pages as before"]
