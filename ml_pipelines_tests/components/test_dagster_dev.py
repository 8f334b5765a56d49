"""End to end: `dagster dev -w workspace.yaml` as a real process on loopback, read
through its GraphQL API the way the UI reads it."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster
import httpx
import psutil
import pytest
import yaml
from dagster_graphql import DagsterGraphQLClient

from ml_pipelines.instance import WORKER_PID_TAG, LocalRunLauncher
from ml_pipelines_tests import REPO_ROOT, ops_location, servers
from ml_pipelines_tests.specs import shipped_attributes, shipped_names

pytestmark = pytest.mark.timeout(420)

READY_TIMEOUT_S = 240  # two code locations load before the webserver answers; slower on a busy machine
LOCATION = "ml_pipelines"  # workspace.yaml and [tool.dg.project] code_location_name: `make dev` and `dg dev` agree
DEMO_PIPELINES = ("credit_default", "diabetes_progression")
DEFAULT_OWNERS = ["team:ml-platform"]  # what definitions.py gives an asset whose spec names no owner
# DESIGN section 4: each stage and the stages it reads
UPSTREAM = {
    "raw_data": set(),
    "validated_data": {"raw_data"},
    "features": {"validated_data"},
    "trained_model": {"features"},
    "evaluation": {"trained_model", "features"},
    "model_package": {"trained_model", "evaluation", "features"},
}
# drift_report also depends on model_package: the lineage shows which model a drift report judged
MONITORING_UPSTREAM = {"production_data": set(), "drift_report": {"production_data", "model_package"}}
# with monitoring.labels: ground truth joins the batches; a retrain window reads the labelled ones
LABELS_UPSTREAM = {"labels": {"production_data"}, "production_performance": {"labels"}}
# the platform's own assets (ml_pipelines/defs/platform.py) -> their group
PLATFORM_ASSETS = {("platform", "utilisation"): "platform"}
# asset -> {check: blocking}
CHECKS = {
    "raw_data": {"matches_expectation_suite": True},
    "evaluation": {"meets_floor": True, "beats_champion": False},
    "drift_report": {"no_drift": False},
    "production_performance": {"performance_holds": False},
}


# the `attributes` of every defs.yaml under ml_pipelines/defs/pipelines, by pipeline name
SPECS = {attributes["name"]: attributes for attributes in map(shipped_attributes, shipped_names())}


def _expected_upstream(attributes: dict[str, Any]) -> dict[str, set[str]]:
    expected = dict(UPSTREAM)
    monitoring = attributes.get("monitoring") or {}
    if monitoring.get("production_data"):
        expected.update(MONITORING_UPSTREAM)
    if monitoring.get("labels"):
        expected.update(LABELS_UPSTREAM)
    if (monitoring.get("retrain") or {}).get("window"):
        expected["raw_data"] = {"labels"}
    return expected


REPOSITORY_QUERY = """
{
  repositoriesOrError {
    __typename
    ... on RepositoryConnection {
      nodes {
        name
        location { name }
        jobs { name isAssetJob }
        assetNodes {
          assetKey { path }
          groupName
          jobNames
          dependencyKeys { path }
          owners {
            __typename
            ... on TeamAssetOwner { team }
            ... on UserAssetOwner { email }
          }
          assetChecksOrError {
            __typename
            ... on AssetChecks { checks { name blocking } }
          }
        }
      }
    }
    ... on PythonError { message }
  }
}
"""


@dataclass
class DagsterDev:
    url: str
    server: servers.ServerProcess
    env: dict[str, str]  # DAGSTER_HOME and the platform home it runs with
    root: Path

    def graphql(self, query: str) -> dict[str, Any]:
        response = httpx.post(f"{self.url}/graphql", json={"query": query}, timeout=30, trust_env=False)
        assert response.status_code == 200, response.text[:500]
        body = response.json()
        assert not body.get("errors"), body["errors"]
        return body["data"]


@pytest.fixture(scope="module")
def dagster_dev(tmp_path_factory) -> Iterator[DagsterDev]:
    root = tmp_path_factory.mktemp("dagster_dev")
    dagster_home = root / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    port = servers.free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        "DAGSTER_HOME": str(dagster_home),
        "ML_PIPELINES_HOME": str(root / "ml_pipelines_home"),
        "ML_PIPELINES_ENV": "local",
    }
    # the operations tests' code location (ml_pipelines_tests/ops_location.py) loads beside the project's own
    ops_workspace = root / "ops_workspace.yaml"
    ops_workspace.write_text(yaml.safe_dump({"load_from": [{"python_module": {
        "module_name": "ml_pipelines_tests.ops_location", "location_name": ops_location.LOCATION,
        "working_directory": str(REPO_ROOT)}}]}))
    with servers.running(
        "dagster dev",
        [servers.venv_executable("dagster"), "dev", "-w", "workspace.yaml", "-w", str(ops_workspace),
         "-h", "127.0.0.1", "-p", str(port)],
        log_path=root / "dagster_dev.log",
        env=env,
        ready=f"{url}/server_info",
        ready_timeout=READY_TIMEOUT_S,
    ) as server:
        dev = DagsterDev(url, server, env, root)
        servers.wait_for_code_locations(dev.graphql, dev.server, time.monotonic() + READY_TIMEOUT_S)
        yield dev


@pytest.fixture(scope="module")
def repository(dagster_dev: DagsterDev) -> dict[str, Any]:
    data = dagster_dev.graphql(REPOSITORY_QUERY)["repositoriesOrError"]
    assert data["__typename"] == "RepositoryConnection", data
    nodes = [n for n in data["nodes"] if n["location"]["name"] != ops_location.LOCATION]
    assert len(nodes) == 1, [n["name"] for n in nodes]
    assert nodes[0]["location"]["name"] == LOCATION
    return nodes[0]


def _assets(repository: dict[str, Any]) -> dict[tuple[str, ...], dict[str, Any]]:
    return {tuple(node["assetKey"]["path"]): node for node in repository["assetNodes"]}


def test_server_info_reports_versions(dagster_dev: DagsterDev):
    info = httpx.get(f"{dagster_dev.url}/server_info", timeout=10, trust_env=False).json()
    assert info["dagster_version"] == dagster.__version__
    assert info["dagster_webserver_version"] == dagster.__version__


def test_the_demo_pipelines_are_loaded():
    assert set(DEMO_PIPELINES) <= set(SPECS), sorted(SPECS)


def test_every_demo_asset_is_listed_with_its_upstream(repository):
    assets = _assets(repository)
    for pipeline, attributes in SPECS.items():
        owners = attributes.get("owners") or DEFAULT_OWNERS
        for stage, upstream in _expected_upstream(attributes).items():
            node = assets.get((pipeline, stage))
            assert node is not None, f"{pipeline}/{stage} is missing; listed: {sorted(assets)}"
            listed = {tuple(d["path"]) for d in node["dependencyKeys"]}
            assert listed == {(pipeline, s) for s in upstream}, f"{pipeline}/{stage} reads {sorted(listed)}"
            assert node["groupName"] == pipeline
            listed_owners = [f"team:{o['team']}" if "team" in o else o["email"] for o in node["owners"]]
            assert listed_owners == owners, f"{pipeline}/{stage} owners {listed_owners}"
    # nothing else is listed but the platform's own assets, and no edge crosses pipelines
    expected_keys = {(p, s) for p, a in SPECS.items() for s in _expected_upstream(a)} | set(PLATFORM_ASSETS)
    assert set(assets) == expected_keys, f"unexpected: {sorted(set(assets) - expected_keys)}"
    for key, group in PLATFORM_ASSETS.items():
        assert assets[key]["groupName"] == group and assets[key]["dependencyKeys"] == []


def test_gating_checks_are_attached(repository):
    assets = _assets(repository)
    for pipeline, attributes in SPECS.items():
        for stage in _expected_upstream(attributes):
            result = assets[(pipeline, stage)]["assetChecksOrError"]
            assert result["__typename"] == "AssetChecks", result
            checks = {c["name"]: c["blocking"] for c in result["checks"]}
            assert checks == CHECKS.get(stage, {}), f"{pipeline}/{stage} checks {checks}"


def test_retrain_jobs_cover_the_chain(repository):
    jobs = {j["name"] for j in repository["jobs"]}
    assets = _assets(repository)
    for pipeline in SPECS:
        job = f"{pipeline}_retrain_job"
        assert job in jobs, f"{job} missing; jobs: {sorted(jobs)}"
        for stage in UPSTREAM:
            assert job in assets[(pipeline, stage)]["jobNames"], f"{pipeline}/{stage} is not in {job}"


def test_the_location_reloads_by_its_name_with_dagsters_graphql_client(dagster_dev: DagsterDev):
    """`make dev` does not watch spec files: a new or edited spec shows after a reload of the
    location, which the README's reload instructions do with this client and this name."""
    from dagster_graphql import DagsterGraphQLClient, ReloadRepositoryLocationStatus

    port = int(dagster_dev.url.rsplit(":", 1)[1])
    client = DagsterGraphQLClient("127.0.0.1", port_number=port)
    info = client.reload_repository_location(LOCATION)
    assert info.status == ReloadRepositoryLocationStatus.SUCCESS, info.message
    servers.wait_for_code_locations(dagster_dev.graphql, dagster_dev.server, time.monotonic() + READY_TIMEOUT_S)


RUNS_QUERY = """
{
  runsOrError {
    ... on Runs { results { runId status jobName } }
  }
}
"""
RUN_EVENTS_QUERY = """
query ($runId: ID!) {
  logsForRun(runId: $runId) {
    ... on EventConnection { events { __typename ... on MessageEvent { message } } }
  }
}
"""
KILLED_RUN_FAILED_WITHIN_S = 60  # run_monitoring.poll_interval_seconds is 10 in dagster.yaml


def _runs(dev: DagsterDev) -> dict[str, dict[str, Any]]:
    return {r["runId"]: r for r in dev.graphql(RUNS_QUERY)["runsOrError"]["results"]}


def test_a_run_whose_worker_is_killed_is_failed_by_run_monitoring(dagster_dev: DagsterDev):
    """The issue's fault: a materialization killed with SIGKILL (`timeout -s KILL`) left its run
    STARTED forever. The daemon of `dagster dev` must fail it (dagster.yaml: run monitoring with
    the local launcher's health check)."""
    before = set(_runs(dagster_dev))
    job = "credit_default_retrain_job"
    with servers.running(
        "dagster job execute",
        [servers.venv_executable("dagster"), "job", "execute", "-m", "ml_pipelines.definitions", "-j", job],
        log_path=dagster_dev.root / "job_execute.log", env=dagster_dev.env, ready=None, stop_signal=signal.SIGKILL,
    ) as worker:
        run = servers.wait_until(
            "the run to start",
            lambda: next((r for i, r in _runs(dagster_dev).items() if i not in before and r["status"] == "STARTED"), None),
            READY_TIMEOUT_S, server=worker,
        )
        os.killpg(worker.pgid, signal.SIGKILL)
        assert worker.popen.wait(timeout=30) == -signal.SIGKILL
    run_id = run["runId"]
    assert run["jobName"] == job
    status = servers.wait_until(
        "run monitoring to fail the killed run",
        lambda: (s := _runs(dagster_dev)[run_id]["status"]) != "STARTED" and s,
        KILLED_RUN_FAILED_WITHIN_S, server=dagster_dev.server,
    )
    assert status == "FAILURE"
    messages = _run_messages(dagster_dev, run_id)
    assert any("run worker process" in m and "is gone" in m for m in messages), messages[-5:]


def _run_messages(dev: DagsterDev, run_id: str) -> list[str]:
    response = httpx.post(f"{dev.url}/graphql", json={"query": RUN_EVENTS_QUERY, "variables": {"runId": run_id}},
                          timeout=30, trust_env=False)
    body = response.json()
    assert not body.get("errors"), body["errors"]
    return [e.get("message") or "" for e in body["data"]["logsForRun"]["events"]]


# ---------------------------------------------------------------- a run launched the way the UI launches it


def _sample_process_tree(dev: DagsterDev, seen: dict[int, tuple[int, str]]) -> None:
    """Record pid -> (parent pid, command line) of every process under `dagster dev` now."""
    for proc in dev.server.processes():
        if proc.pid in seen:
            continue
        try:
            seen[proc.pid] = (proc.ppid(), " ".join(proc.cmdline()))
        except psutil.Error:
            continue


def _submit_and_watch(dev: DagsterDev, stages: tuple[str, ...], seen: dict[int, tuple[int, str]],
                      until: tuple[dagster.DagsterRunStatus, ...], on_start: Any = None) -> tuple[str, Any]:
    """Submit diabetes_progression's `stages` as the UI does; sample the process tree until the run is in `until`."""
    client = DagsterGraphQLClient("127.0.0.1", port_number=int(dev.url.rsplit(":", 1)[1]))
    selection = [dagster.AssetKey(["diabetes_progression", stage]) for stage in stages]
    run_id = client.submit_job_execution("diabetes_progression_retrain_job", asset_selection=selection)

    def ended() -> Any:
        _sample_process_tree(dev, seen)
        status = client.get_run_status(run_id)
        if on_start is not None and status == dagster.DagsterRunStatus.STARTED:
            on_start(client, run_id)
        return status in until and status

    return run_id, servers.wait_until("the UI-launched run to end", ended, READY_TIMEOUT_S, server=dev.server,
                                      interval=0.1)


def test_a_ui_launched_run_is_forked_from_the_warm_process_and_runs_its_steps_in_it(dagster_dev: DagsterDev):
    """dagster.yaml's LocalRunLauncher forks each run worker from a forkserver that preloaded the
    configured third-party libraries (not the project's code); the local default executor then
    runs every step in that worker. Read from the run's events and the process tree."""
    seen: dict[int, tuple[int, str]] = {}
    stages = ("raw_data", "validated_data")
    run_id, status = _submit_and_watch(dagster_dev, stages, seen,
                                       (dagster.DagsterRunStatus.SUCCESS, dagster.DagsterRunStatus.FAILURE))
    with dagster.DagsterInstance.from_config(dagster_dev.env["DAGSTER_HOME"]) as instance:
        events = [e.dagster_event for e in instance.all_logs(run_id) if e.dagster_event is not None]
        assert instance.run_coordinator.dequeue_interval_seconds == 1  # dagster.yaml: no 5 s wait in the queue
        preloaded = instance.run_launcher._preload_modules  # noqa: SLF001 - the launcher as dagster.yaml built it
        worker_pid = int(instance.get_run_by_id(run_id).tags[WORKER_PID_TAG])
    assert status == dagster.DagsterRunStatus.SUCCESS, [e.message for e in events if e.is_failure]
    materialized = {e.asset_key for e in events if e.event_type == dagster.DagsterEventType.ASSET_MATERIALIZATION}
    assert materialized == {dagster.AssetKey(["diabetes_progression", stage]) for stage in stages}
    assert any("Executing steps in process" in (e.message or "") for e in events)
    assert {e.pid for e in events if e.event_type == dagster.DagsterEventType.STEP_START} == {worker_pid}

    assert "torch" in preloaded and not any(name.startswith("ml_pipelines") for name in preloaded)
    assert worker_pid in seen, "the run worker was never seen under dagster dev"
    warm = seen[worker_pid][0]
    assert "multiprocessing.forkserver" in seen[warm][1], seen[warm]
    assert all(repr(name) in seen[warm][1] for name in preloaded), seen[warm][1]


def test_a_ui_launched_run_is_terminated_from_the_ui(dagster_dev: DagsterDev):
    """Terminate, as the UI's button does (the webserver's launcher, not the daemon's that forked
    the worker): the warm worker gets an interrupt and the run ends CANCELED, its worker gone."""
    seen: dict[int, tuple[int, str]] = {}
    asked: list[str] = []

    def terminate_once(client: DagsterGraphQLClient, run_id: str) -> None:
        if not asked:
            asked.append(run_id)
            client.terminate_run(run_id)

    stages = ("raw_data", "validated_data", "features", "trained_model", "evaluation", "model_package")
    run_id, status = _submit_and_watch(dagster_dev, stages, seen, (
        dagster.DagsterRunStatus.SUCCESS, dagster.DagsterRunStatus.FAILURE, dagster.DagsterRunStatus.CANCELED),
        on_start=terminate_once)
    assert asked == [run_id]
    assert status == dagster.DagsterRunStatus.CANCELED
    with dagster.DagsterInstance.from_config(dagster_dev.env["DAGSTER_HOME"]) as instance:
        worker_pid = int(instance.get_run_by_id(run_id).tags[WORKER_PID_TAG])
    servers.wait_until("the run worker to exit", lambda: not psutil.pid_exists(worker_pid)
                       or psutil.Process(worker_pid).status() == psutil.STATUS_ZOMBIE, 30)


def test_the_launcher_refuses_to_preload_the_projects_own_code():
    with pytest.raises(ValueError, match=r"preload_modules: \['ml_pipelines.definitions'\] are the project's own"):
        LocalRunLauncher(preload_modules=["pandas", "ml_pipelines.definitions"])


# ---------------------------------------------------------------- operations: idle steps, runaway runs, pools, team queues
# under this daemon, with dagster.yaml as shipped, on the pipelines of ml_pipelines_tests/ops_location.py

RUN_MONITORING_POLL_S = 10  # dagster.yaml run_monitoring.poll_interval_seconds
IDLE_SAMPLE_S = 1.0  # core.idle.sample_interval(5 s): how late the idle watchdog can see idleness
SLACK_S = 5  # a step's start and failure events, a run worker's exit: written by a busy 2-core machine
ENDED = (dagster.DagsterRunStatus.SUCCESS, dagster.DagsterRunStatus.FAILURE, dagster.DagsterRunStatus.CANCELED)
TRAINING = ("raw_data", "validated_data", "features", "trained_model")


def _launch(dev: DagsterDev, pipeline: str, stages: tuple[str, ...] | None = None) -> str:
    client = DagsterGraphQLClient("127.0.0.1", port_number=int(dev.url.rsplit(":", 1)[1]))
    selection = [dagster.AssetKey([pipeline, stage]) for stage in stages] if stages else None
    return client.submit_job_execution(f"{pipeline}_retrain_job", repository_location_name=ops_location.LOCATION,
                                       repository_name="__repository__", asset_selection=selection)


def _materialize_from_ui(dev: DagsterDev, pipeline: str, stages: tuple[str, ...]) -> str:
    """What the UI's Materialize button launches: Dagster's implicit asset job over the selected assets."""
    client = DagsterGraphQLClient("127.0.0.1", port_number=int(dev.url.rsplit(":", 1)[1]))
    return client.submit_job_execution("__ASSET_JOB", repository_location_name=ops_location.LOCATION,
                                       repository_name="__repository__",
                                       asset_selection=[dagster.AssetKey([pipeline, stage]) for stage in stages])


def _wait_ended(dev: DagsterDev, instance: dagster.DagsterInstance, run_ids: list[str], timeout: float) -> None:
    servers.wait_until(f"runs {run_ids} to end",
                       lambda: all(instance.get_run_by_id(i).status in ENDED for i in run_ids), timeout,
                       server=dev.server)


def _events(instance: dagster.DagsterInstance, run_id: str, step: str | None = None) -> list[Any]:
    return [e for e in instance.all_logs(run_id)
            if e.dagster_event is not None and (step is None or e.dagster_event.step_key == step)]


def _of_type(events: list[Any], kind: dagster.DagsterEventType) -> list[Any]:
    return [e for e in events if e.dagster_event.event_type == kind]


def _no_version_left(dev: DagsterDev, pipeline: str) -> None:
    from ml_pipelines_tests.helpers import registry_at

    home = Path(dev.env["ML_PIPELINES_HOME"])
    assert registry_at(home).list_versions(pipeline) == []
    left = [str(p) for p in (home / "registry").rglob("*") if pipeline in str(p)]
    assert left == [], f"{pipeline} left registry files behind: {left}"


def _assert_ended_at_max_runtime(instance: dagster.DagsterInstance, run_id: str) -> None:
    runaway = instance.get_run_record_by_id(run_id)
    assert runaway.dagster_run.tags["dagster/max_runtime"] == str(ops_location.MAX_RUNTIME_S)
    assert runaway.dagster_run.status == dagster.DagsterRunStatus.FAILURE
    ran = runaway.end_time - runaway.start_time
    assert ops_location.MAX_RUNTIME_S <= ran <= ops_location.MAX_RUNTIME_S + RUN_MONITORING_POLL_S + SLACK_S, ran
    messages = [e.message or "" for e in _events(instance, run_id)]
    assert any(f"maximum runtime of {ops_location.MAX_RUNTIME_S} seconds" in m for m in messages)


def test_an_idle_step_and_a_runaway_run_are_ended_without_a_registry_version(dagster_dev: DagsterDev):
    """resources.ingest.idle_timeout 5s: the sleeping step is ended by the idle watchdog within its
    limit plus one sample, and fails for good naming itself, its CPU and its limit.
    resources.ingest.max_runtime 15s: the job's dagster/max_runtime tag, which run monitoring
    enforces within one poll interval; a run of the implicit asset job (the UI's Materialize
    button), which has no job tags, gets the same limit from its first step. Three runs of
    three teams; the third waits for one of the two run slots."""
    idle_run, runaway_run = _launch(dagster_dev, "ops_idle"), _launch(dagster_dev, "ops_runaway")
    ui_run = _materialize_from_ui(dagster_dev, "ops_runaway_ui", ("raw_data", "validated_data"))
    with dagster.DagsterInstance.from_config(dagster_dev.env["DAGSTER_HOME"]) as instance:
        _wait_ended(dagster_dev, instance, [idle_run, runaway_run, ui_run], 150)
        idle_step = _events(instance, idle_run, "ops_idle__raw_data")
        assert instance.get_run_by_id(idle_run).status == dagster.DagsterRunStatus.FAILURE
        for run_id in (runaway_run, ui_run):
            _assert_ended_at_max_runtime(instance, run_id)
        worker_pids = [int(instance.get_run_by_id(r).tags[WORKER_PID_TAG]) for r in (idle_run, runaway_run, ui_run)]

    starts = _of_type(idle_step, dagster.DagsterEventType.STEP_START)
    failures = _of_type(idle_step, dagster.DagsterEventType.STEP_FAILURE)
    assert len(starts) == 1 and len(failures) == 1, "an idle step is not retried"
    took = failures[0].timestamp - starts[0].timestamp
    assert ops_location.IDLE_TIMEOUT_S <= took <= ops_location.IDLE_TIMEOUT_S + IDLE_SAMPLE_S + SLACK_S, took
    reason = failures[0].dagster_event.event_specific_data.error.message
    assert "step ops_idle__raw_data was idle for" in reason, reason
    assert re.search(r"CPU \d+\.\d% of one core \(threshold 5%\)", reason), reason
    assert "its limit is resources.ingest.idle_timeout = 5s" in reason, reason

    for pid in worker_pids:
        servers.wait_until("the run worker to exit", lambda pid=pid: not psutil.pid_exists(pid)
                           or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, 30)
    for pipeline in ("ops_idle", "ops_runaway", "ops_runaway_ui"):
        _no_version_left(dagster_dev, pipeline)


def _training_interval(instance: dagster.DagsterInstance, run_id: str, pipeline: str) -> tuple[float, float]:
    events = _events(instance, run_id, f"{pipeline}__trained_model")
    start = _of_type(events, dagster.DagsterEventType.STEP_START)
    done = _of_type(events, dagster.DagsterEventType.STEP_SUCCESS)
    assert len(start) == 1 and len(done) == 1, [e.dagster_event.event_type for e in events]
    return start[0].timestamp, done[0].timestamp


def test_training_steps_share_the_train_pool_and_a_teams_second_run_waits(dagster_dev: DagsterDev):
    """dagster.yaml: pools.default_limit 1 (training runs in the `train` pool) and one run per
    team. Team ops-a launches two runs, the second from the UI's Materialize button (the
    implicit asset job, tagged with its assets' team by the run coordinator), team ops-b one:
    ops-a's second run waits in the queue while a run slot is free and ops-b's run starts; no
    two training steps overlap; all finish."""
    with dagster.DagsterInstance.from_config(dagster_dev.env["DAGSTER_HOME"]) as instance:
        config = instance.get_concurrency_config()
        assert config.pool_config.default_pool_limit == 1
        assert {"key": "team", "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in (
            config.run_queue_config.tag_concurrency_limits)
        # launched together, so that ops-a's first run and ops-b's start at once and reach training
        # together: one training step has to wait for the pool's slot
        first, second = _launch(dagster_dev, "ops_a", TRAINING), _materialize_from_ui(dagster_dev, "ops_a", TRAINING)
        other = _launch(dagster_dev, "ops_b", TRAINING)
        servers.wait_until("ops_a's first run to start",
                           lambda: instance.get_run_by_id(first).status != dagster.DagsterRunStatus.QUEUED, 60)
        servers.wait_until("ops_b's run to start",
                           lambda: instance.get_run_by_id(other).status != dagster.DagsterRunStatus.QUEUED, 60)
        assert instance.get_run_by_id(second).status == dagster.DagsterRunStatus.QUEUED
        _wait_ended(dagster_dev, instance, [first, second, other], 300)
        runs = {i: instance.get_run_record_by_id(i) for i in (first, second, other)}
        assert [(r.dagster_run.tags["pipeline"], r.dagster_run.tags["team"]) for r in runs.values()] == [
            ("ops_a", "ops-a"), ("ops_a", "ops-a"), ("ops_b", "ops-b")]
        assert runs[second].dagster_run.job_name == "__ASSET_JOB"
        intervals = sorted([_training_interval(instance, first, "ops_a"), _training_interval(instance, second, "ops_a"),
                            _training_interval(instance, other, "ops_b")])
        blocked = [e.message for r in runs for e in _events(instance, r)
                   if "blocked by limit for pool" in (e.message or "")]

    assert [r.dagster_run.status for r in runs.values()] == [dagster.DagsterRunStatus.SUCCESS] * 3
    assert runs[second].start_time >= runs[first].end_time, "a team's second run started before its first ended"
    assert runs[other].start_time < runs[second].start_time
    for (_, end), (start, _) in itertools.pairwise(intervals):
        assert end <= start, f"training steps overlap: {intervals}"
    assert blocked and all(m.endswith("pool train") for m in blocked), blocked
