"""The production Dagster instance's storage (docker/dagster.yaml) on a real PostgreSQL:
a demo pipeline materializes, and its run, event log and asset check executions are
rows in PostgreSQL that a fresh instance (another process's view) reads back.

Only the storage and concurrency sections of docker/dagster.yaml are used here: its
K8sRunLauncher needs a Kubernetes API to create run pods, which this machine does not
have, so the run executes in process (execute_in_process bypasses the run launcher and
the queued run coordinator); test_k8s_and_docker.py validates the launcher's config
against dagster-k8s's schema, and test_faults.py drives its worker health check.
"""

from __future__ import annotations

import dagster as dg
import sqlalchemy as sa
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

from ml_pipelines.components import build_pipeline_defs
from ml_pipelines.resources import local_resources
from ml_pipelines_tests.prod.common import JOB, PIPELINE, STAGES, credit_spec


def test_a_demo_pipeline_run_lives_in_postgresql(pg_instance_factory, tmp_path):
    made = pg_instance_factory()
    instance = made.instance
    assert isinstance(instance.run_storage, PostgresRunStorage)
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
    # the concurrency section of docker/dagster.yaml is in force
    assert instance.get_concurrency_config().pool_config.default_pool_limit == 2

    spec = credit_spec()
    defs = dg.Definitions.merge(build_pipeline_defs(spec), dg.Definitions(resources=local_resources(tmp_path / "platform")))
    result = defs.resolve_job_def(JOB).execute_in_process(instance=instance, raise_on_error=False)
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    run_id = result.run_id

    engine = sa.create_engine(made.url)
    try:
        with engine.connect() as connection:
            tables = set(sa.inspect(connection).get_table_names())
            assert {"runs", "event_logs", "asset_check_executions", "asset_keys", "alembic_version"} <= tables

            status = connection.execute(
                sa.text("SELECT status, pipeline_name FROM runs WHERE run_id = :run"), {"run": run_id}
            ).one()
            assert tuple(status) == ("SUCCESS", JOB)

            counts = dict(
                connection.execute(
                    sa.text(
                        "SELECT dagster_event_type, count(*) FROM event_logs "
                        "WHERE run_id = :run AND dagster_event_type IS NOT NULL GROUP BY dagster_event_type"
                    ),
                    {"run": run_id},
                ).all()
            )
            # the stored names of run events are the old pipeline ones
            run_start, run_success = dg.DagsterEventType.RUN_START.value, dg.DagsterEventType.RUN_SUCCESS.value
            assert (run_start, run_success) == ("PIPELINE_START", "PIPELINE_SUCCESS")
            assert counts[run_start] == 1 and counts[run_success] == 1
            assert counts["ASSET_MATERIALIZATION"] == len(STAGES)
            assert counts["ASSET_CHECK_EVALUATION"] == 3  # the suite, the floor and the champion
            assert counts["STEP_SUCCESS"] == len(STAGES) + 3  # six assets and three checks
            assert "STEP_FAILURE" not in counts

            materialized = {
                row[0]
                for row in connection.execute(
                    sa.text(
                        "SELECT asset_key FROM event_logs WHERE run_id = :run "
                        "AND dagster_event_type = 'ASSET_MATERIALIZATION'"
                    ),
                    {"run": run_id},
                )
            }
            assert materialized == {dg.AssetKey([PIPELINE, stage]).to_string() for stage in STAGES}

            checks = connection.execute(
                sa.text(
                    "SELECT check_name, execution_status FROM asset_check_executions "
                    "WHERE run_id = :run ORDER BY check_name"
                ),
                {"run": run_id},
            ).all()
            assert [tuple(row) for row in checks] == [
                ("beats_champion", "SUCCEEDED"),
                ("matches_expectation_suite", "SUCCEEDED"),
                ("meets_floor", "SUCCEEDED"),
            ]
    finally:
        engine.dispose()

    # a second instance over the same database (what the webserver or a run pod sees)
    with dg.DagsterInstance.from_config(str(made.home)) as other:
        assert other.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS
        model_package = dg.AssetKey([PIPELINE, "model_package"])
        event = other.get_latest_materialization_event(model_package)
        assert event is not None and event.run_id == run_id
        version = event.asset_materialization.metadata["version"].value
        assert version == result.output_for_node(f"{PIPELINE}__model_package").version
        check = other.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(dg.AssetKey([PIPELINE, "evaluation"]), "beats_champion")]
        )
        assert list(check.values())[0].run_id == run_id
