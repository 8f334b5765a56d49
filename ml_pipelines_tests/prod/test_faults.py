"""Faults a production run must survive, against real servers on loopback.

1. A run worker killed with SIGKILL mid-training. The run is created as the
   K8sRunLauncher creates it and executed by the run pod's own command, `dagster api
   execute_run`, in its own process group, against the PostgreSQL instance
   (docker/dagster.yaml) with the prod S3 resources; the group is killed while the
   model trains. The real
   `dagster-daemon run` then applies the instance's run monitoring: the production
   K8sRunLauncher asks the Kubernetes API for the run worker's Job, finds it failed
   and fails the run (max_resume_run_attempts: 0). No cluster exists here, so the
   launcher talks to a stand-in for the one endpoint it reads, GET
   /apis/batch/v1/namespaces/<ns>/jobs/<name>/status, which reports the Job as a
   cluster would: active while the worker process lives, failed once it is dead.
   The run is then re-executed from failure and the registry stays consistent.
2. The S3 endpoint unreachable for 3 seconds mid-run (a TCP proxy in front of moto
   stops listening and drops its connections): the failing step is retried with the
   RetryPolicy's backoff and the run succeeds.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import signal
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._grpc.types import ExecuteRunArgs
from dagster_k8s.job import get_job_name_from_run_id

from ml_pipelines.components.policies import RETRY_POLICY
from ml_pipelines.core.layout import registry_for
from ml_pipelines.settings import Settings
from ml_pipelines_tests.prod.common import JOB, PIPELINE, credit_spec, prod_pipeline_defs, production_instance_config
from ml_pipelines_tests.prod.jobs import SLOW_FIT_MARKER, SLOW_FIT_SECONDS, slow_retrain_job
from ml_pipelines_tests.servers import running, venv_executable, wait_until
from ml_pipelines_tests.services import TcpProxy

NAMESPACE = "ml-pipelines-test"


# ---------------------------------------------------------------- a Kubernetes Jobs API stand-in


class KubernetesJobStatus(ThreadingHTTPServer):
    """Answers the K8sRunLauncher's health check for the Jobs registered with `watch`:
    status {active: 1} while the process lives, {failed: 1} once it is gone (what a
    Job with backoffLimit 0 reports after its pod is killed). Unknown Jobs are 404."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _JobStatusHandler)
        self.jobs: dict[str, int] = {}
        self.requests: list[tuple[str, str]] = []  # (path, answered status)
        self.thread = threading.Thread(target=self.serve_forever, name="k8s-stand-in", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def watch(self, job_name: str, pid: int) -> None:
        self.jobs[job_name] = pid

    def status_of(self, job_name: str) -> dict | None:
        pid = self.jobs.get(job_name)
        if pid is None:
            return None
        return {"active": 1} if _alive(pid) else {"failed": 1}

    def write_kubeconfig(self, path: Path) -> Path:
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "stand-in", "cluster": {"server": self.url}}],
            "users": [{"name": "test", "user": {"token": "test-token"}}],
            "contexts": [{"name": "stand-in", "context": {"cluster": "stand-in", "user": "test", "namespace": NAMESPACE}}],
            "current-context": "stand-in",
        }))
        return path


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


class _JobStatusHandler(BaseHTTPRequestHandler):
    server: KubernetesJobStatus

    def log_message(self, *args) -> None:  # quiet
        pass

    def _send(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0]
        job = re.fullmatch(r"/apis/batch/v1/namespaces/([^/]+)/jobs/([^/]+)/status", path)
        if job and job.group(1) == NAMESPACE and (status := self.server.status_of(job.group(2))) is not None:
            self.server.requests.append((path, "failed" if "failed" in status else "active"))
            self._send(200, {"apiVersion": "batch/v1", "kind": "Job",
                             "metadata": {"name": job.group(2), "namespace": NAMESPACE}, "status": status})
            return
        if re.fullmatch(r"/api/v1/namespaces/[^/]+/pods", path):  # debug info for a failed worker
            self.server.requests.append((path, "pods"))
            self._send(200, {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": []})
            return
        self.server.requests.append((path, "404"))
        self._send(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404})


@pytest.fixture
def kubernetes(tmp_path, monkeypatch):
    server = KubernetesJobStatus()
    server.thread.start()
    monkeypatch.setenv("DAGSTER_K8S_NAMESPACE", NAMESPACE)  # docker/dagster.yaml's job_namespace
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _wait(predicate, timeout: float, what: str, process=None):
    return wait_until(what, predicate, timeout, server=process)


def _assert_registry_consistent(registry, prod_env) -> list[str]:
    """Only whole versions are listed (every artifact verifies), and the champion is one of them."""
    versions = [record.version for record in registry.list_versions(PIPELINE)]
    for version in versions:
        registry.fetch_artifacts(PIPELINE, version, prod_env.scratch / "verify" / version)  # checksums
    champion = registry.get_alias(PIPELINE, "champion")
    assert champion is None or champion in versions, (champion, versions)
    return versions


@contextlib.contextmanager
def _launch_like_k8s(instance, kubernetes, logs: Path, marker: Path):
    """What the K8sRunLauncher does: create the run, then a Job whose pod runs
    `dagster api execute_run`; here the pod is a process group on this machine,
    killed (SIGKILL, as a pod is) at the end of the block if the test has not killed it."""
    recon = dg.reconstructable(slow_retrain_job)
    run = instance.create_run_for_job(
        job_def=recon.get_definition(), job_code_origin=recon.get_python_origin(),
        tags={"ml_pipelines/trigger": "manual"},
    )
    job_name = get_job_name_from_run_id(run.run_id)
    command = ExecuteRunArgs(job_origin=run.job_code_origin, run_id=run.run_id, instance_ref=None,
                             set_exit_code_on_failure=True).get_command_args()
    assert command[:3] == ["dagster", "api", "execute_run"]
    with running("run-worker", [venv_executable("dagster"), *command[1:]], log_path=logs / "worker.log",
                 env={SLOW_FIT_MARKER: str(marker), SLOW_FIT_SECONDS: "600"}, ready=None,
                 stop_signal=signal.SIGKILL) as worker:
        kubernetes.watch(job_name, worker.pid)  # the Job exists from launch on, before the run starts
        yield run.run_id, job_name, worker


# ---------------------------------------------------------------- 1. SIGKILL mid-training


def test_a_run_killed_mid_training_is_failed_by_run_monitoring_then_reexecuted(
    pg_instance_factory, prod_env, kubernetes, tmp_path
):
    production = production_instance_config()
    launcher = copy.deepcopy(production["run_launcher"])
    assert launcher["class"] == "K8sRunLauncher"
    # outside a cluster: the stand-in API through a kubeconfig instead of the in-cluster service account
    launcher["config"].update(load_incluster_config=False,
                              kubeconfig_file=str(kubernetes.write_kubeconfig(tmp_path / "kubeconfig")))
    monitoring = dict(production["run_monitoring"], poll_interval_seconds=1)  # 30 s in production
    assert monitoring["enabled"] and monitoring["max_resume_run_attempts"] == 0
    # run_retries is left out: the daemon would re-launch the failed run through the K8sRunLauncher,
    # which needs a real cluster to create the Job; the test re-executes it from failure itself
    made = pg_instance_factory(
        sections=("storage", "concurrency", "run_coordinator"),
        replace={"run_launcher": launcher, "run_monitoring": monitoring},
    )
    instance = made.instance
    assert type(instance.run_launcher).__name__ == "K8sRunLauncher"
    assert instance.run_monitoring_enabled and instance.run_monitoring_max_resume_run_attempts == 0

    marker = tmp_path / "training-started"
    logs = tmp_path / "logs"
    with (
        running("dagster-daemon", [venv_executable("dagster-daemon"), "run", "--empty-workspace"],
                log_path=logs / "daemon.log", ready=None, stop_timeout=60) as daemon,
        _launch_like_k8s(instance, kubernetes, logs, marker) as (run_id, job_name, worker),
    ):
        _wait(marker.exists, 240, "training to start", process=worker)
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.STARTED

        # while the worker lives, monitoring asks about its Job and leaves the run alone
        _wait(lambda: any(job_name in path for path, _ in kubernetes.requests), 120,
              "run monitoring to check the run worker", process=daemon)
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.STARTED

        os.killpg(worker.pgid, signal.SIGKILL)
        assert worker.popen.wait(timeout=30) == -signal.SIGKILL
        _wait(lambda: not any(_alive(p.pid) for p in worker.processes()), 30, "the worker's processes to die")

        run = _wait(lambda: (r := instance.get_run_by_id(run_id)).is_finished and r, 90,
                    "run monitoring to end the run", process=daemon)
        assert run.status == dg.DagsterRunStatus.FAILURE
        assert (f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs/{job_name}/status", "failed") in kubernetes.requests

    records = instance.get_records_for_run(run_id).records
    events = [record.event_log_entry for record in records]
    failure = [e for e in events if e.dagster_event_type == dg.DagsterEventType.RUN_FAILURE]
    assert len(failure) == 1
    assert "Detected run worker status" in failure[0].message and "Marking run" in failure[0].message
    started = {e.step_key for e in events if e.dagster_event_type == dg.DagsterEventType.STEP_START}
    succeeded = {e.step_key for e in events if e.dagster_event_type == dg.DagsterEventType.STEP_SUCCESS}
    assert f"{PIPELINE}__trained_model" in started - succeeded  # killed mid-training
    assert f"{PIPELINE}__features" in succeeded

    # nothing was registered by the dead run
    registry = registry_for(Settings.from_env())
    assert _assert_registry_consistent(registry, prod_env) == []
    assert registry.pipelines() == []

    # re-execute from failure: the finished steps are not run again, their outputs come from S3
    options = dg.ReexecutionOptions.from_failure(run_id, instance)
    with dg.execute_job(dg.reconstructable(slow_retrain_job), instance=instance, reexecution_options=options) as result:
        assert result.success
        assert result.dagster_run.parent_run_id == run_id
        executed = {e.step_key for e in result.all_events if e.is_step_success}
        assert f"{PIPELINE}__raw_data" not in executed and f"{PIPELINE}__features" not in executed
        assert {f"{PIPELINE}__trained_model", f"{PIPELINE}__model_package"} <= executed
        (package,) = result.asset_materializations_for_node(f"{PIPELINE}__model_package")
        version = package.metadata["version"].value

    versions = _assert_registry_consistent(registry, prod_env)
    assert versions == [version]
    assert registry.get_alias(PIPELINE, "champion") == version
    assert prod_env.bucket.keys(prod_env.key("bentos", PIPELINE) + "/") == [prod_env.key("bentos", PIPELINE, f"{version}.bento")]


# ---------------------------------------------------------------- 2. S3 unreachable mid-run


OUTAGE_SECONDS = 3.0


def test_an_s3_outage_mid_run_is_retried_with_backoff_and_the_run_succeeds(
    pg_instance_factory, prod_env, moto_server, monkeypatch
):
    proxy = TcpProxy(moto_server.port).start()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        # botocore's own retries (5 attempts for the IO manager's client) can ride out a short
        # outage unseen; with one attempt for the registry's client the outage reaches Dagster,
        # which is the layer under test here
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
        # the first registry read of the run (the champion's alias) gets no answer, and from then
        # on the endpoint refuses connections for OUTAGE_SECONDS
        trigger = f"/{prod_env.key('registry', PIPELINE, 'aliases', 'champion.json')}"
        proxy.cut_when(trigger, OUTAGE_SECONDS)

        instance = pg_instance_factory().instance
        job = prod_pipeline_defs(credit_spec()).resolve_job_def(JOB)
        assert job.op_retry_policy == RETRY_POLICY
        result = job.execute_in_process(instance=instance, raise_on_error=False)
    finally:
        proxy.stop()
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint)

    assert len(proxy.cut_requests) == 1 and trigger.encode() in proxy.cut_requests[0]
    assert len(proxy.outages) == 1
    outage_start, outage_end = proxy.outages[0]
    assert outage_end - outage_start >= OUTAGE_SECONDS

    assert result.success, [e.message for e in result.all_events if e.is_failure]
    events = result.all_events
    retries = [e for e in events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    restarts = [e for e in events if e.event_type == dg.DagsterEventType.STEP_RESTARTED]
    assert retries and len(restarts) == len(retries)
    failed_steps = {e.step_key for e in retries}
    # the steps that read the registry's champion alias
    assert failed_steps <= {f"{PIPELINE}__raw_data_matches_expectation_suite", f"{PIPELINE}__validated_data"}
    cause = retries[0].event_specific_data.error.to_string()  # RetryRequestedFromPolicy, from botocore's error
    assert re.search(r"ConnectionClosedError|EndpointConnectionError", cause), cause[-2000:]
    # backoff: RetryPolicy(delay=2, EXPONENTIAL, PLUS_MINUS) waits 2 +- 2 s, then 6 +- 2 s, ...
    attempts: Counter[str] = Counter()
    for event in retries:
        attempts[event.step_key] += 1
        expected = RETRY_POLICY.delay * (2 ** attempts[event.step_key] - 1)
        wait = event.event_specific_data.seconds_to_wait
        assert expected - RETRY_POLICY.delay <= wait <= expected + RETRY_POLICY.delay, (event.step_key, wait)
    assert max(attempts.values()) <= RETRY_POLICY.max_retries
    for step in failed_steps:
        assert any(e.is_step_success and e.step_key == step for e in events)

    registry = registry_for(Settings.from_env())  # straight to the server
    versions = _assert_registry_consistent(registry, prod_env)
    version = result.output_for_node(f"{PIPELINE}__model_package").version
    assert versions == [version] and registry.get_alias(PIPELINE, "champion") == version
