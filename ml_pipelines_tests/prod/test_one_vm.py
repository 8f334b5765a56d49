"""The one-VM deployment shape (the compose stack's): prod storage (Dagster's instance in
PostgreSQL; assets, registry and bento exports in S3) with the multiprocess executor, as
the settings choose them. A pipeline materializes through the real `dagster asset
materialize` CLI, in its own process, on the test PostgreSQL cluster and moto's S3 server;
the test sets only the environment, never the executor."""

from __future__ import annotations

import os
import subprocess
import tempfile

import dagster as dg

from ml_pipelines.core.layout import registry_for
from ml_pipelines.settings import Settings
from ml_pipelines_tests import REPO_ROOT, servers
from ml_pipelines_tests.prod.common import PIPELINE, STAGES

DEFS_MODULE = "ml_pipelines_tests.prod.vm_defs"
CHECKS = 3  # the suite on raw_data, the floor and the champion on evaluation, each its own step
MULTIPROCESS_STARTED = "Executing steps using multiprocess executor"


def _events(instance: dg.DagsterInstance, run_id: str) -> list[dg.DagsterEvent]:
    return [entry.dagster_event for entry in instance.all_logs(run_id) if entry.dagster_event is not None]


def test_a_pipeline_materializes_through_the_dagster_cli_on_postgresql_and_s3(
    pg_instance_factory, prod_env, monkeypatch
):
    made = pg_instance_factory()  # DAGSTER_HOME and DAGSTER_PG_URL point at a new database
    monkeypatch.setenv("ML_PIPELINES_EXECUTOR", "multiprocess")
    # the forkserver's socket lives in TMPDIR, and a Unix socket path has at most 107 bytes: the
    # per-test scratch folder under pytest-xdist's base is longer than that
    short_tmp = tempfile.mkdtemp(prefix="vm-", dir="/tmp")
    monkeypatch.setenv("TMPDIR", short_tmp)
    selection = ",".join(f"{PIPELINE}/{stage}" for stage in STAGES)  # keys that exist: a missing one selects all
    cli = subprocess.run(
        [servers.venv_executable("dagster"), "asset", "materialize", "-m", DEFS_MODULE, "--select", selection],
        cwd=REPO_ROOT, env={**os.environ, **servers.QUIET_ENV}, capture_output=True, text=True, timeout=600,
    )
    assert cli.returncode == 0, cli.stderr[-4000:]

    (run,) = made.instance.get_runs()
    assert run.status == dg.DagsterRunStatus.SUCCESS
    events = _events(made.instance, run.run_id)
    materialized = {e.asset_key for e in events if e.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION}
    assert materialized == {dg.AssetKey([PIPELINE, stage]) for stage in STAGES}

    # the executor the setting chose: every step in its own process, none in the run's
    assert any(e.event_type == dg.DagsterEventType.ENGINE_EVENT and MULTIPROCESS_STARTED in (e.message or "")
               for e in events)
    succeeded = {e.step_key for e in events if e.event_type == dg.DagsterEventType.STEP_SUCCESS}
    assert len(succeeded) == len(STAGES) + CHECKS
    workers = {e.step_key: e.pid for e in events if e.event_type == dg.DagsterEventType.STEP_WORKER_STARTED}
    assert set(workers) == succeeded
    run_pid = next(e.pid for e in events if e.event_type == dg.DagsterEventType.RUN_START)
    assert len(set(workers.values())) == len(workers) and run_pid not in workers.values()

    # durable state only in S3: one pickle per asset, the registry version and its bento export
    io_objects = {key.rsplit("/", 1)[-1] for key in prod_env.bucket.keys(prod_env.key("io") + "/")}
    assert io_objects >= set(STAGES)
    (record,) = registry_for(Settings.from_env()).list_versions(PIPELINE)
    assert record.trigger.run_id == run.run_id
    assert prod_env.bucket.keys(prod_env.key("bentos", PIPELINE) + "/") == [
        prod_env.key("bentos", PIPELINE, f"{record.version}.bento")
    ]
