"""docker/k8s/model-service.yaml validates offline against the Kubernetes schemas
(kubernetes-validate --strict) and wires the probes, resources, port, env and
secret the model service needs."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from ml_pipelines.core.packaging import bento_tag_for
from ml_pipelines_tests.servers import REPO_ROOT, venv_executable

MANIFEST = REPO_ROOT / "docker" / "k8s" / "model-service.yaml"
K8S_VERSION = "1.37.0"
SERVING_PORT = 3000  # BentoML's port, EXPOSEd by `bentoml containerize` images
QUANTITY = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "": 1}


def documents() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]


def by_kind(kind: str) -> dict[str, Any]:
    found = [d for d in documents() if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def container() -> dict[str, Any]:
    containers = by_kind("Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def quantity(value: str | int) -> float:
    text = str(value)
    for suffix in ("Ki", "Mi", "Gi", "m"):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * QUANTITY[suffix]
    return float(text)


def port_number(ref: str | int, c: dict[str, Any]) -> int:
    if isinstance(ref, int):
        return ref
    named = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ref in named, f"port {ref!r} is not a container port"
    return named[ref]


def test_cli_validates_every_resource_strictly():
    result = subprocess.run(
        [venv_executable("kubernetes-validate"), "--strict", "-k", K8S_VERSION, str(MANIFEST)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    passed = [line for line in result.stdout.splitlines() if line.startswith("INFO") and " passed " in line]
    assert len(passed) == len(documents()) >= 2, result.stdout
    assert "ERROR" not in result.stdout


@pytest.mark.parametrize("index", range(len(documents())))
def test_each_document_validates_with_the_python_api(index):
    document = documents()[index]
    kubernetes_validate.validate(document, K8S_VERSION, strict=True)


def test_strict_mode_rejects_a_misspelled_field(tmp_path):
    """The check above would be empty if strictness were off: a typo must fail."""
    document = by_kind("Deployment")
    document["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/readyz"}}
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(document, K8S_VERSION, strict=True)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(document))
    result = subprocess.run(
        [venv_executable("kubernetes-validate"), "--strict", "-k", K8S_VERSION, str(bad)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0 and "readinesProbe" in result.stdout


def test_probes_hit_the_bentoml_health_endpoints_on_the_serving_port():
    c = container()
    assert port_number("http", c) == SERVING_PORT
    probes = {name: c[name]["httpGet"] for name in ("readinessProbe", "livenessProbe", "startupProbe")}
    assert probes["readinessProbe"]["path"] == "/readyz"
    assert probes["livenessProbe"]["path"] == "/livez"
    assert probes["startupProbe"]["path"] == "/livez"
    for probe in probes.values():
        assert port_number(probe["port"], c) == SERVING_PORT
    # startup gets room for the model load; liveness does not kill a slow-but-alive pod at once
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120
    assert c["livenessProbe"]["failureThreshold"] >= 3


def test_resources_have_requests_and_limits():
    resources = container()["resources"]
    for kind in ("cpu", "memory"):
        request, limit = quantity(resources["requests"][kind]), quantity(resources["limits"][kind])
        assert 0 < request <= limit, (kind, request, limit)
    assert quantity(resources["requests"]["memory"]) >= 2**30  # pandas + sklearn + two processes


def test_env_names_the_pipeline_and_reads_api_keys_from_a_secret():
    env = {e["name"]: e for e in container()["env"]}
    assert env["ML_PIPELINES_SERVE_PIPELINE"]["value"] == "credit_default"
    assert (REPO_ROOT / "ml_pipelines" / "defs" / "pipelines" / "credit_default" / "defs.yaml").exists()
    assert env["ML_PIPELINES_SERVE_FROM"]["value"] == "bento"
    assert env["ML_PIPELINES_AUDIT"]["value"] == "on"
    keys = env["ML_PIPELINES_API_KEYS"]
    assert "value" not in keys, "API keys never sit in the manifest"
    assert keys["valueFrom"]["secretKeyRef"]["name"] == "ml-pipelines-api-keys"
    assert keys["valueFrom"]["secretKeyRef"]["key"] == "keys"
    assert keys["valueFrom"]["secretKeyRef"].get("optional") is not True, "no pod starts without its keys"
    # the audit trail lands on the mounted volume under ML_PIPELINES_HOME
    home = Path(env["ML_PIPELINES_HOME"]["value"])
    mounts = {m["name"]: Path(m["mountPath"]) for m in container()["volumeMounts"]}
    assert home == mounts["audit"] or mounts["audit"] in home.parents
    volumes = {v["name"]: v for v in by_kind("Deployment")["spec"]["template"]["spec"]["volumes"]}
    claim = volumes["audit"]["persistentVolumeClaim"]["claimName"]
    assert by_kind("PersistentVolumeClaim")["metadata"]["name"] == claim


def test_image_is_a_containerized_bento_serving_on_the_port():
    c = container()
    # the image `bentoml containerize` builds from credit_default's bento is named after the bento
    # (prod/test_containers.py builds and runs one), in the cluster's registry
    assert c["image"].rsplit("/", 1)[-1].split(":")[0] == bento_tag_for("credit_default", "any").split(":")[0]
    assert c["args"][0] == "serve"
    assert c["args"][c["args"].index("--port") + 1] == str(SERVING_PORT)
    security = by_kind("Deployment")["spec"]["template"]["spec"]["securityContext"]
    assert security["runAsNonRoot"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False


def test_service_selects_the_pods_and_targets_the_serving_port():
    deployment, service = by_kind("Deployment"), by_kind("Service")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    ports = service["spec"]["ports"]
    assert [port_number(p["targetPort"], container()) for p in ports] == [SERVING_PORT]
    assert deployment["metadata"].get("namespace") == service["metadata"].get("namespace")
    # rolling out a new champion image never drops below the current capacity
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    # the pod outlives the service's 30 s request timeout when it is stopped
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > 30
