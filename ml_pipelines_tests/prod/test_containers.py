"""The images, built and run for real with podman (ml_pipelines_tests/containers.py says how,
with no Docker engine and no image registry):

- the user-code image (docker/Dockerfile, on a local Debian base, with the local CPU torch wheel)
  serves the package over gRPC from a container; `dagster dev` on the host loads it through a
  workspace file (docker/workspace.yaml's location at the container's address) with the compose
  stack's instance (docker/compose.dagster.yaml: PostgreSQL, runs launched through the code
  server), and a demo pipeline's retrain job, submitted through the UI's GraphQL API, runs in that
  container with the prod storage profile on the test PostgreSQL cluster and moto's S3 server:
  the run succeeds, and its version and bento land in the bucket. The host has no storage
  settings: only the container can have written them.
- that run's bento, as exported to the bucket, is containerized by `bentoml containerize
  --backend podman` on the same base, and the container, started with the Kubernetes manifest's
  arguments, answers typed predictions, appends them to its audit trail (a mounted volume), and
  refuses a bad request with its 4xx in the one error shape.

The images stay tagged in podman's store; a run after the first reuses every cached layer.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest
import yaml
from dagster_graphql import DagsterGraphQLClient

from ml_pipelines.core.layout import LocalLayout, registry_for
from ml_pipelines.core.prediction_log import iter_audit
from ml_pipelines.core.records import VersionRecord
from ml_pipelines.settings import Settings
from ml_pipelines_tests import containers, servers
from ml_pipelines_tests.prod.common import DOCKER_DIR, STAGES
from ml_pipelines_tests.service_fixtures import AWS_OVERRIDES, S3Bucket
from ml_pipelines_tests.services import MotoServer, PostgresCluster, s3_client, s3_environment

# the first build on a machine downloads every dependency into the image (minutes); later ones are cached
pytestmark = pytest.mark.timeout(3600)

PIPELINE = "diabetes_progression"  # a shipped demo pipeline; its champion is a scikit-learn model
JOB = f"{PIPELINE}_retrain_job"
LOCATION = "ml_pipelines"
READY_TIMEOUT_S = 240
RUN_TIMEOUT_S = 600
MANIFEST = DOCKER_DIR / "k8s" / "model-service.yaml"


@dataclass
class ContainerRun:
    run_id: str
    status: dg.DagsterRunStatus
    events: list[dg.DagsterEvent]
    bucket: S3Bucket
    settings: Settings  # the container's storage settings, read by the package's own Settings
    image: containers.Built
    root: Path


def _grpc_serving(port: int) -> bool:
    check = subprocess.run(
        [servers.venv_executable("dagster"), "api", "grpc-health-check", "--host", "127.0.0.1", "--port", str(port)],
        capture_output=True, timeout=60, env={**os.environ, **servers.QUIET_ENV},
    )
    return check.returncode == 0


def _workspace(path: Path, port: int) -> Path:
    """docker/workspace.yaml (the compose stack's), its server at the container's address on loopback."""
    workspace = yaml.safe_load((DOCKER_DIR / "workspace.yaml").read_text())
    (entry,) = workspace["load_from"]
    assert entry["grpc_server"]["location_name"] == LOCATION
    entry["grpc_server"].update(host="127.0.0.1", port=port)
    path.write_text(yaml.safe_dump(workspace))
    return path


def _storage(postgres: PostgresCluster, moto: MotoServer) -> tuple[S3Bucket, dict[str, str]]:
    """A new bucket and database, and the prod profile's variables that point at them."""
    token = secrets.token_hex(4)
    client = s3_client(moto.endpoint)
    bucket = S3Bucket(f"ml-test-{token}", moto.endpoint, client)
    client.create_bucket(Bucket=bucket.name)
    env = {
        "ML_PIPELINES_ENV": "prod", "ML_PIPELINES_EXECUTOR": "multiprocess",  # as docker-compose.yaml sets them
        "ML_PIPELINES_S3_BUCKET": bucket.name, "ML_PIPELINES_S3_PREFIX": f"prod-{token}",
        "DAGSTER_PG_URL": postgres.create_database(f"dagster_{token}"),
        **s3_environment(moto.endpoint),
    }
    return bucket, env


@pytest.fixture(scope="module")
def user_code_image() -> containers.Built:
    return containers.build_user_code()


@pytest.fixture(scope="module")
def containerized_run(user_code_image, postgres, moto_server, tmp_path_factory) -> Iterator[ContainerRun]:
    root = tmp_path_factory.mktemp("containers")
    bucket, storage_env = _storage(postgres, moto_server)
    # the compose stack's instance; the run worker in the container gets it from the launcher (an instance
    # ref) and writes its compute logs under it, so the container sees this folder at the same path
    home = root / "dagster_home"
    (home / "storage").mkdir(parents=True)
    shutil.copy(DOCKER_DIR / "compose.dagster.yaml", home / "dagster.yaml")
    for folder in (home, home / "storage"):
        folder.chmod(0o777)  # the image's user (uid 10001) writes there
    grpc_port, ui_port = servers.free_port(), servers.free_port()
    name = f"ml-pipelines-user-code-{secrets.token_hex(4)}"
    address = ["--host", "127.0.0.1", "--port", str(grpc_port)]  # the image's CMD, replaced
    container = containers.run_command(user_code_image.image_id, name=name, env=storage_env,
                                       volumes=[f"{home}:{home}"], args=address)
    host_env = {"DAGSTER_HOME": str(home), "DAGSTER_PG_URL": storage_env["DAGSTER_PG_URL"]}
    dev_command = [servers.venv_executable("dagster"), "dev", "-w", str(_workspace(root / "workspace.yaml", grpc_port)),
                   "-h", "127.0.0.1", "-p", str(ui_port)]
    try:
        with servers.running("user code container", container, log_path=root / "user_code.log",
                             env=containers.podman_env(), ready=lambda _: _grpc_serving(grpc_port),
                             ready_timeout=READY_TIMEOUT_S), \
             servers.running("dagster dev", dev_command, log_path=root / "dagster_dev.log", env=host_env,
                             ready=f"http://127.0.0.1:{ui_port}/server_info", ready_timeout=READY_TIMEOUT_S) as dev:
            run_id, status = _launch_and_wait(dev, ui_port)
    finally:
        containers.remove_container(name)
    # the servers are gone: from here on this process has the container's storage settings, to read what it wrote
    with pytest.MonkeyPatch.context() as patch:
        for variable in AWS_OVERRIDES:
            patch.delenv(variable, raising=False)
        for variable, value in storage_env.items():
            patch.setenv(variable, value)
        with dg.DagsterInstance.from_config(str(home)) as instance:
            events = [e.dagster_event for e in instance.all_logs(run_id) if e.dagster_event is not None]
        yield ContainerRun(run_id, status, events, bucket, Settings.from_env(), user_code_image, root)


def _launch_and_wait(dev: servers.ServerProcess, port: int) -> tuple[str, dg.DagsterRunStatus]:
    def graphql(query: str) -> dict[str, Any]:
        response = httpx.post(f"http://127.0.0.1:{port}/graphql", json={"query": query}, timeout=30, trust_env=False)
        assert response.status_code == 200, response.text[:500]
        return response.json()["data"]

    servers.wait_for_code_locations(graphql, dev, time.monotonic() + READY_TIMEOUT_S)
    client = DagsterGraphQLClient("127.0.0.1", port_number=port)
    run_id = client.submit_job_execution(JOB, repository_location_name=LOCATION)
    done = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)
    status = servers.wait_until(f"run {run_id} to end", lambda: (s := client.get_run_status(run_id)) in done and s,
                                RUN_TIMEOUT_S, server=dev, interval=1.0)
    return run_id, status


def _record(run: ContainerRun) -> VersionRecord:
    (record,) = registry_for(run.settings).list_versions(PIPELINE)
    return record


def test_the_user_code_image_is_multi_stage_non_root_and_within_its_size_budget(user_code_image):
    config = json.loads(containers.podman("image", "inspect", user_code_image.image_id).stdout)[0]["Config"]
    assert config["User"] == "10001"
    assert config["Entrypoint"] == ["dagster", "api", "grpc", "--module-name", "ml_pipelines.definitions"]
    size = containers.image_size(user_code_image.image_id)
    assert size <= containers.USER_CODE_SIZE_BUDGET, f"{size / 1e9:.2f} GB"
    # the wheel stage's sources and wheel stayed there, and there is no compiler
    script = "id -u; ls /tmp; test -e /build || echo no-sources; command -v gcc || echo no-gcc"
    listed = containers.podman("run", "--rm", "--network", "host", "--entrypoint", "sh", user_code_image.image_id,
                               "-c", script).stdout.split()
    assert listed == ["10001", "no-sources", "no-gcc"], listed
    assert containers.image_exists(containers.USER_CODE_IMAGE)  # left tagged for the next run's cache


def test_a_demo_pipeline_runs_in_the_user_code_container_through_dagster_dev(containerized_run: ContainerRun):
    run = containerized_run
    failures = [e.message for e in run.events if e.is_failure]
    assert run.status == dg.DagsterRunStatus.SUCCESS, (failures, (run.root / "user_code.log").read_text()[-4000:])
    materialized = {e.asset_key for e in run.events if e.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION}
    assert materialized == {dg.AssetKey([PIPELINE, stage]) for stage in STAGES}
    # steps ran in their own processes (the multiprocess executor the container was given)
    assert any("multiprocess executor" in (e.message or "") for e in run.events)

    # the version, its champion alias and its bento export are in the bucket, under the container's prefix
    record = _record(run)
    assert record.trigger.run_id == run.run_id
    assert registry_for(run.settings).get_alias(PIPELINE, "champion") == record.version
    prefix = run.settings.s3_prefix
    assert run.bucket.keys(f"{prefix}/bentos/{PIPELINE}/") == [f"{prefix}/bentos/{PIPELINE}/{record.version}.bento"]
    assert run.bucket.keys(f"{prefix}/io/{PIPELINE}/")


# ---------------------------------------------------------------- the model service


@dataclass
class ModelService:
    url: str
    image: containers.Built
    home: Path  # the container's ML_PIPELINES_HOME, a volume
    version: str
    log: Path


def _manifest_args(port: int) -> list[str]:
    """The Kubernetes Deployment's container arguments, on `port`."""
    deployment = next(d for d in yaml.safe_load_all(MANIFEST.read_text()) if d and d["kind"] == "Deployment")
    args = list(deployment["spec"]["template"]["spec"]["containers"][0]["args"])
    args[args.index("--port") + 1] = str(port)
    return args


@pytest.fixture(scope="module")
def model_service(containerized_run: ContainerRun) -> Iterator[ModelService]:
    run = containerized_run
    record = _record(run)
    root = run.root / "model_service"
    archive = root / f"{record.version}.bento"
    root.mkdir()
    prefix = run.settings.s3_prefix
    archive.write_bytes(run.bucket.get(f"{prefix}/bentos/{PIPELINE}/{record.version}.bento"))
    bentoml_home = root / "bentoml"
    imported = subprocess.run([servers.venv_executable("bentoml"), "import", str(archive)], capture_output=True,
                              text=True, timeout=300, env={**os.environ, **servers.QUIET_ENV,
                                                           "BENTOML_HOME": str(bentoml_home)})
    assert imported.returncode == 0, imported.stdout + imported.stderr
    bento_tag = record.package.bento
    image = containers.containerize_bento(bento_tag, bentoml_home)
    repository = bento_tag.split(":")[0]
    containers.remove_other_tags(f"localhost/{repository}", keep=f"localhost/{bento_tag}")

    home = root / "home"
    home.mkdir()
    home.chmod(0o777)  # the bento's user (uid 1034) writes its audit trail there
    port = servers.free_port()
    name = f"{repository}-{secrets.token_hex(4)}"
    env = {"ML_PIPELINES_HOME": "/var/lib/ml_pipelines", "ML_PIPELINES_AUDIT": "on"}
    command = containers.run_command(image.image_id, name=name, env=env, volumes=[f"{home}:/var/lib/ml_pipelines"],
                                     args=_manifest_args(port))
    url = f"http://127.0.0.1:{port}"
    try:
        with servers.running("model service container", command, log_path=root / "service.log",
                             env=containers.podman_env(), ready=f"{url}/readyz", ready_timeout=READY_TIMEOUT_S):
            yield ModelService(url, image, home, record.version, root / "service.log")
    finally:
        containers.remove_container(name)


def test_the_bento_image_serves_typed_predictions_and_audits_them(model_service: ModelService):
    service = model_service
    config = json.loads(containers.podman("image", "inspect", service.image.image_id).stdout)[0]["Config"]
    assert config["User"] == "bentoml"  # uid 1034, the manifest's runAsUser
    records = [
        {"age": 59.0, "sex": "male", "bmi": 32.1, "bp": 101.0, "tc": 157.0, "ldl": 93.2, "hdl": 38.0, "tch": 4.0,
         "ltg": 4.86, "glu": 87.0},
        {"age": 48.0, "sex": "female", "bmi": 21.6, "bp": 87.0, "tc": 183.0, "ldl": 103.2, "hdl": 70.0, "tch": 3.0,
         "ltg": 3.89, "glu": 69.0},
    ]
    with httpx.Client(base_url=service.url, timeout=30, trust_env=False) as client:
        answer = client.post("/predict", json={"records": records})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["model_version"] == service.version
        assert len(body["predictions"]) == 2 and all(isinstance(p, float) for p in body["predictions"])
        # the request schema is the served version's: a field it does not know is refused, in the one error shape
        bad = client.post("/predict", json={"records": [{**records[0], "age": "old"}]})
        assert bad.status_code == 400, bad.text
        assert bad.json() == {"error": {"status": 400, "message": bad.json()["error"]["message"]}}
        assert "records[0].age" in bad.json()["error"]["message"]
        missing = client.get("/no-such-route")
        assert missing.status_code == 404 and set(missing.json()["error"]) == {"status", "message"}
        docs = client.get("/docs.json").json()
        assert docs["info"]["version"] == service.version

    # the audit trail, on the container's volume, read back by the package's own reader (production_data's)
    trail = iter_audit(LocalLayout(service.home).audit, PIPELINE)
    audited = [r for r in trail if r["request_id"] == body["request_id"]]
    assert [(r["index"], r["model_version"]) for r in audited] == [(0, service.version), (1, service.version)]
    assert [r["input"] for r in audited] == records
    assert [r["output"]["prediction"] for r in audited] == body["predictions"]
