"""The analyst's view, shared by the GraphQL and browser tests: one `dagster dev`
(a real process on loopback, in its own process group, stopped by PID) on a
workspace whose demo pipelines are materialized in process into the same
DAGSTER_HOME (while the server boots) before any test runs.

To stay fast the workspace is a temporary definitions file: credit_default
shrunk to ~3,000 rows and one sklearn model, and diabetes_progression as shipped.
credit_default also gets one landed production batch and its drift report, so
every asset of every pipeline has a materialization to look at.
"""

from __future__ import annotations

import contextlib
import json
import runpy
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest

from ml_pipelines.core.landing import land_labelled_batch, write_labels
from ml_pipelines.core.registry import ModelRegistry
from ml_pipelines.settings import Settings
from ml_pipelines.spec import PipelineSpec
from ml_pipelines_tests import REPO_ROOT, servers
from ml_pipelines_tests.helpers import registry_at
from ml_pipelines_tests.specs import shipped_attributes, small_credit_attributes

DEFS_FILE = "analyst_defs.py"
LOCATION = DEFS_FILE  # `dagster dev -f <file>` names the code location after the file
READY_TIMEOUT_S = 180

# The workspace `dagster dev` loads: the same code the tests materialize with in process.
DEFS_SOURCE = '''\
"""Written by ml_pipelines_tests/ui/conftest.py: the analyst workspace."""
import json
from pathlib import Path

import dagster as dg

from ml_pipelines.components import build_pipeline_defs
from ml_pipelines.definitions import apply_policies
from ml_pipelines.resources import local_resources
from ml_pipelines.spec import PipelineSpec

_CONFIG = json.loads((Path(__file__).parent / "analyst_config.json").read_text())

defs = dg.Definitions.merge(
    *(apply_policies(build_pipeline_defs(PipelineSpec.model_validate(a))) for a in _CONFIG["specs"]),
    dg.Definitions(resources=local_resources(_CONFIG["platform_home"])),
)
'''


@dataclass
class AnalystWorld:
    url: str
    server: servers.ServerProcess
    root: Path
    platform_home: Path
    dagster_home: Path
    specs: dict[str, PipelineSpec]
    defs: dg.Definitions  # the in-process copy of what the server loaded
    registry: ModelRegistry
    landed_batch: str  # the credit_default production_data partition that was materialized
    reports_url: str  # `ml-pipelines reports`, serving model cards and Data Docs

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = httpx.post(
            f"{self.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60, trust_env=False
        )
        assert response.status_code == 200, response.text[:500]
        body = response.json()
        assert not body.get("errors"), body["errors"]
        return body["data"]

    def asset_keys(self, pipeline: str) -> list[dg.AssetKey]:
        return sorted(
            (k for k in self.defs.resolve_asset_graph().get_all_asset_keys() if k.path[0] == pipeline),
            key=lambda k: k.to_user_string(),
        )


def _materialize(defs: dg.Definitions, instance: dg.DagsterInstance, specs: dict[str, PipelineSpec]) -> str:
    """Every pipeline's retrain job, then one landed credit_default batch, and its labels, through
    the monitor and labels jobs."""
    for name in specs:
        result = defs.resolve_job_def(f"{name}_retrain_job").execute_in_process(instance=instance, raise_on_error=False)
        errors = [e.event_specific_data.error.message for e in result.all_events if e.is_step_failure]
        assert result.success, f"{name}_retrain_job failed: {errors}"
    credit, variables = specs["credit_default"], Settings.from_env().variables
    batch = land_labelled_batch(credit, drift=0.0, rows=1000, seed=21, variables=variables)
    write_labels(credit, batch, variables=variables)
    instance.add_dynamic_partitions("credit_default_production_batches", [batch.path.name])  # as the sensor does
    for job in ("credit_default_monitor_job", "credit_default_labels_job"):
        result = defs.resolve_job_def(job).execute_in_process(
            instance=instance, partition_key=batch.path.name, raise_on_error=False
        )
        assert result.success, [e.event_specific_data.error.message for e in result.all_events if e.is_step_failure]
    return batch.path.name


def _create_storage(instance: dg.DagsterInstance) -> None:
    """Create the SQLite run, event and schedule storage before `dagster dev` opens the same
    DAGSTER_HOME, so the two processes never race to create the tables."""
    instance.get_runs(limit=1)
    instance.get_latest_materialization_event(dg.AssetKey(["none"]))
    instance.all_instigator_state()


@pytest.fixture(scope="session")
def analyst_world(tmp_path_factory) -> Iterator[AnalystWorld]:
    root = tmp_path_factory.mktemp("analyst")
    platform_home = root / "ml_pipelines_home"
    dagster_home = root / "dagster_home"
    workspace = root / "workspace"
    for folder in (platform_home, dagster_home, workspace):
        folder.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    attributes = [small_credit_attributes(sensors=False), shipped_attributes("diabetes_progression")]
    specs = {a["name"]: PipelineSpec.model_validate(a) for a in attributes}
    (workspace / "analyst_config.json").write_text(
        json.dumps({"platform_home": str(platform_home), "specs": attributes}, default=str)
    )
    (workspace / DEFS_FILE).write_text(DEFS_SOURCE)
    env = {
        "DAGSTER_HOME": str(dagster_home),
        "ML_PIPELINES_HOME": str(platform_home),  # the credit spec lands batches under ${ML_PIPELINES_HOME}
        "ML_PIPELINES_ENV": "local",
        "FRESHNESS_DAEMON_INTERVAL_SECONDS": "5",  # Dagster's freshness daemon: judge policies soon after start
    }

    port, reports_port = servers.free_port(), servers.free_port()
    url = f"http://127.0.0.1:{port}"
    env["ML_PIPELINES_REPORTS_URL"] = reports_url = f"http://127.0.0.1:{reports_port}"
    with contextlib.ExitStack() as stack:  # stops the server last, whatever fails on the way
        with pytest.MonkeyPatch.context() as patch, dg.DagsterInstance.from_config(str(dagster_home)) as instance:
            for key, value in env.items():
                patch.setenv(key, value)
            defs = runpy.run_path(str(workspace / DEFS_FILE))["defs"]
            _create_storage(instance)
            # the server boots while the pipelines materialize; the tests start once both are done
            server = stack.enter_context(servers.running(
                "dagster dev (analyst)",
                [servers.venv_executable("dagster"), "dev", "-f", str(workspace / DEFS_FILE), "-h", "127.0.0.1",
                 "-p", str(port)],
                log_path=root / "dagster_dev.log",
                cwd=workspace,
                env=env,
                ready=f"{url}/server_info",
                ready_timeout=READY_TIMEOUT_S,
                wait=False,
            ))
            # the report server the UI's model card and Data Docs links point at (`make dev` starts one too)
            stack.enter_context(servers.running(
                "ml-pipelines reports (analyst)",
                [servers.venv_executable("ml-pipelines"), "reports", "--port", str(reports_port)],
                log_path=root / "reports.log",
                env=env,
                ready=f"{reports_url}/healthz",
            ))
            landed = _materialize(defs, instance, specs)
        world = AnalystWorld(
            url=url,
            server=server,
            root=root,
            platform_home=platform_home,
            dagster_home=dagster_home,
            specs=specs,
            defs=defs,
            registry=registry_at(platform_home),
            landed_batch=landed,
            reports_url=reports_url,
        )
        server.wait_ready()
        servers.wait_for_code_locations(world.graphql, world.server, time.monotonic() + READY_TIMEOUT_S)
        yield world
