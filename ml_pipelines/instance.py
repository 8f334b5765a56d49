"""Dagster instance plugins for the local instance (dagster.yaml at the repo root).

LocalRunLauncher is Dagster's DefaultRunLauncher plus two things:

- A run worker health check. Run monitoring fails a STARTED run only through its
  launcher's check, and the DefaultRunLauncher has none: a run whose worker was
  killed (`kill -9`, an OOM kill, `dagster dev` killed with its run) would stay
  STARTED forever. Every run worker records its pid in its RUN_START event, so a
  run whose worker process is gone is failed by the daemon within
  run_monitoring.poll_interval_seconds.
- Warm run workers (`preload_modules`). The DefaultRunLauncher asks the code server
  to spawn a fresh interpreter per run, which spends seconds importing torch,
  scikit-learn, Great Expectations and BentoML before the first step. With
  `preload_modules` set, the launcher forks each run worker from a forkserver that
  imported those libraries once, when the first run launched. The worker then runs
  exactly what `dagster api execute_run` runs. Only third-party libraries may be
  preloaded: the project's own code must load fresh in every run, or a reloaded spec
  would run with the definitions of the day the forkserver started. A run whose
  code location uses another Python than this one goes through the code server.

PipelineRunCoordinator is Dagster's QueuedRunCoordinator that tags a run which comes without
its pipeline's tags before it is queued. Pipeline jobs tag their runs `pipeline` and `team`
(components/policies.run_tags), and the queue's per-pipeline and per-team limits key on
those tags; but the UI's Materialize button launches Dagster's implicit asset job, whose
runs carry no job tags and so would skip those queues. Such a run is given the tags its
selected assets say (their `pipeline` asset tag and their first owner), when all of them
agree.

Imported by the webserver, the daemon and every run worker when they load the
instance: it imports dagster and psutil only.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

import psutil
from dagster import DagsterRun, Field
from dagster._core.events import DagsterEventType
from dagster._core.launcher import CheckRunHealthResult, DefaultRunLauncher, LaunchRunContext, WorkerStatus
from dagster._core.run_coordinator import QueuedRunCoordinator, SubmitRunContext
from dagster._serdes import ConfigurableClassData

PID_CLOCK_SLACK_S = 2.0  # a process created after its run started is another process with a reused pid
PROJECT_PACKAGE = "ml_pipelines"
WORKER_PID_TAG = "ml_pipelines/run_worker_pid"  # set at launch, so any process (the UI's too) can terminate the run
PIPELINE_TAG = "pipeline"  # run tag (and asset tag) of every pipeline's runs: per-pipeline queue limits
TEAM_TAG = "team"  # run tag: the spec's first owner, `team:` dropped (per-team queue limits)


def team_of(owners: Sequence[str]) -> str:
    """The team a run is queued under: the first owner, `team:` dropped."""
    return owners[0].removeprefix("team:")


class PipelineRunCoordinator(QueuedRunCoordinator):
    """QueuedRunCoordinator that gives a run without `pipeline`/`team` tags those of its assets
    (see the module docstring), so per-pipeline and per-team queue limits hold for UI runs too."""

    def submit_run(self, context: SubmitRunContext) -> DagsterRun:
        run = context.dagster_run
        missing = {PIPELINE_TAG, TEAM_TAG} - set(run.tags)
        if missing and run.asset_selection:
            tags = _tags_of_assets(context.workspace.asset_graph, run.asset_selection)
            new = {key: value for key, value in tags.items() if key in missing}
            if new:
                self._instance.add_run_tags(run.run_id, new)
        return super().submit_run(context)


def _tags_of_assets(graph: Any, keys: Any) -> dict[str, str]:
    """The pipeline and team that every one of these assets shares; a tag they disagree on is left out."""
    nodes = [graph.get(key) for key in keys if graph.has(key)]
    pipelines = {node.tags.get(PIPELINE_TAG) for node in nodes}
    teams = {team_of(node.owners) if node.owners else None for node in nodes}
    tags = {}
    if len(pipelines) == 1 and None not in pipelines:
        tags[PIPELINE_TAG] = pipelines.pop()
    if len(teams) == 1 and None not in teams:
        tags[TEAM_TAG] = teams.pop()
    return tags


class LocalRunLauncher(DefaultRunLauncher):
    """DefaultRunLauncher whose run workers' health run monitoring can check, and which can fork
    run workers from a warm process (see the module docstring)."""

    def __init__(self, inst_data: ConfigurableClassData | None = None, preload_modules: Sequence[str] = ()):
        super().__init__(inst_data=inst_data)
        stale = [name for name in preload_modules if name.split(".")[0] == PROJECT_PACKAGE]
        if stale:
            raise ValueError(f"run_launcher.config.preload_modules: {stale} are the project's own code, which "
                             "must load fresh in every run; list only third-party libraries")
        self._preload_modules = list(preload_modules)
        self._warm_context: Any = None

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {"preload_modules": Field([str], is_required=False, default_value=[],
                                         description="third-party modules the warm run worker process imports once")}

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: dict[str, Any]) -> LocalRunLauncher:
        return cls(inst_data=inst_data, preload_modules=config_value.get("preload_modules", []))

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        if not self._preload_modules or not _runs_in_this_python(run):
            super().launch_run(context)
            return
        from dagster._grpc.types import ExecuteRunArgs
        from dagster._serdes import serialize_value

        args = ExecuteRunArgs(job_origin=run.job_code_origin, run_id=run.run_id, instance_ref=self._instance.get_ref())
        worker = self._warm().Process(target=_execute_run, args=(serialize_value(args),), name=f"run {run.run_id}")
        worker.start()
        self._run_ids.add(run.run_id)
        self._instance.add_run_tags(run.run_id, {WORKER_PID_TAG: str(worker.pid)})
        self._instance.report_engine_event(
            f"Run worker forked from the warm process (pid {worker.pid}; preloaded: {', '.join(self._preload_modules)})",
            run, cls=self.__class__)

    def _warm(self) -> Any:
        """The forkserver context every warm run worker is forked from; started on first use."""
        if self._warm_context is None:
            self._warm_context = multiprocessing.get_context("forkserver")
            self._warm_context.set_forkserver_preload(self._preload_modules)
        return self._warm_context

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id) if self.has_instance else None
        if run is None or run.is_finished or WORKER_PID_TAG not in run.tags:
            return super().terminate(run_id)
        self._instance.report_run_canceling(run)
        try:
            os.kill(int(run.tags[WORKER_PID_TAG]), signal.SIGINT)  # the run worker's capture_interrupts ends the run as CANCELED
        except ProcessLookupError:
            return False
        return True

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        event = _run_start_event(self._instance, run.run_id)
        pid = event.dagster_event.pid if event is not None and event.dagster_event is not None else None
        if event is None or pid is None:
            # nothing to check yet (run monitoring fails a run on anything but RUNNING or SUCCESS)
            return CheckRunHealthResult(WorkerStatus.RUNNING, "the run worker's pid is not recorded yet")
        if _alive_since(pid, event.timestamp):
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        return CheckRunHealthResult(
            WorkerStatus.FAILED, f"run worker process {pid} is gone: it was killed or crashed before the run ended"
        )


def _execute_run(serialized_args: str) -> None:
    """The body of `dagster api execute_run`, in a process forked from the warm one."""
    from dagster._cli.api import execute_run_command

    execute_run_command.callback(input_json=serialized_args, compressed_input_json=None)


def _runs_in_this_python(run: DagsterRun) -> bool:
    origin = run.job_code_origin
    executable = origin.repository_origin.executable_path if origin is not None else None
    return executable is not None and os.path.realpath(executable) == os.path.realpath(sys.executable)


def _run_start_event(instance: Any, run_id: str) -> Any:
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.RUN_START, limit=1).records
    return records[0].event_log_entry if records else None


def _alive_since(pid: int, started_at: float) -> bool:
    """True when process `pid` runs and was created before `started_at` (not a later process
    that reused the pid)."""
    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and process.create_time() <= started_at + PID_CLOCK_SLACK_S
    except psutil.Error:
        return False
