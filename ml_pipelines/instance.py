"""Dagster instance plugins for the local instance (dagster.yaml at the repo root).

Run monitoring fails a STARTED run only through its launcher's run worker health
check, and Dagster's DefaultRunLauncher has none: a run whose worker was killed
(`kill -9`, an OOM kill, `dagster dev` or `dagster job execute` killed with its
run) would stay STARTED forever. LocalRunLauncher is the DefaultRunLauncher plus
that check: the local instance runs every run worker on this machine, and each
records its pid in its RUN_START event, so a run whose worker process is gone is
failed by the daemon within run_monitoring.poll_interval_seconds.

Imported by the webserver, the daemon and every run worker when they load the
instance: it imports dagster and psutil only.
"""

from __future__ import annotations

from typing import Any

import psutil
from dagster import DagsterRun
from dagster._core.events import DagsterEventType
from dagster._core.launcher import CheckRunHealthResult, DefaultRunLauncher, WorkerStatus
from dagster._serdes import ConfigurableClassData

PID_CLOCK_SLACK_S = 2.0  # a process created after its run started is another process with a reused pid


class LocalRunLauncher(DefaultRunLauncher):
    """DefaultRunLauncher whose run workers' health run monitoring can check."""

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: dict[str, Any]) -> LocalRunLauncher:
        return cls(inst_data=inst_data)

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        records = self._instance.get_records_for_run(run.run_id, of_type=DagsterEventType.RUN_START, limit=1).records
        event = records[0].event_log_entry if records else None
        pid = event.dagster_event.pid if event is not None and event.dagster_event is not None else None
        if event is None or pid is None:
            # nothing to check yet (run monitoring fails a run on anything but RUNNING or SUCCESS)
            return CheckRunHealthResult(WorkerStatus.RUNNING, "the run worker's pid is not recorded yet")
        if _alive_since(pid, event.timestamp):
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        return CheckRunHealthResult(
            WorkerStatus.FAILED, f"run worker process {pid} is gone: it was killed or crashed before the run ended"
        )


def _alive_since(pid: int, started_at: float) -> bool:
    """True when process `pid` runs and was created before `started_at` (not a later process
    that reused the pid)."""
    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and process.create_time() <= started_at + PID_CLOCK_SLACK_S
    except psutil.Error:
        return False
