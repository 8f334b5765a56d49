"""End to end: `ml-pipelines serve` as a real `bentoml serve` process on loopback,
driven by real HTTP clients.

Two registry versions of a small credit-default classifier (a categorical feature and a
nullable column), trained once per test session (serving/conftest.py), are copied into
this module's platform root. One server without
auth answers most tests; a second one, started with ML_PIPELINES_API_KEYS, answers
the auth test. Both run in their own process group and are stopped by PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bentoml
import dagster as dg
import httpx
import numpy as np
import pandas as pd
import pytest
from bentoml.exceptions import BentoMLException

from ml_pipelines.components import build_pipeline_defs
from ml_pipelines.core.models import predict
from ml_pipelines.core.records import ModelInputs
from ml_pipelines.datasets.credit import generate
from ml_pipelines.resources import local_resources
from ml_pipelines.serving.runtime import InlineRoute, records_to_frame
from ml_pipelines.spec import PipelineSpec, trusted_roots
from ml_pipelines_tests.helpers import registry_at
from ml_pipelines_tests.servers import REPO_ROOT, ServerProcess, free_port, running, venv_executable
from ml_pipelines_tests.specs import make_spec

pytestmark = pytest.mark.timeout(600)

PIPELINE = "credit_serving"
TRAIN_ROWS = 3000
INPUTS = ["income", "age", "employment_years", "debt_ratio", "credit_lines", "purpose", "home_ownership"]
MAX_RECORDS = 50  # serving.max_records in the spec: the 413 boundary
LOAD_REQUESTS = 2000
LOAD_CONCURRENCY = 32
READY_TIMEOUT_S = 180
API_KEYS = {"tester": "s3cret-serving-key", "ops": "another-valid-key"}
API_KEY, OTHER_KEY = API_KEYS["tester"], API_KEYS["ops"]


def serving_spec(c: float) -> PipelineSpec:
    """A credit_default-like classifier; `c` (LogisticRegression's C) tells the two versions apart."""
    return make_spec(
        name=PIPELINE,
        description="Serving tests: loan defaults",
        task="classification",
        target="defaulted",
        source={
            "kind": "synthetic",
            "generator": "ml_pipelines.datasets.credit:generate",
            "params": {"rows": TRAIN_ROWS, "seed": 7},
        },
        schema={
            "columns": {
                "income": {"type": "float", "min": 0},
                "age": {"type": "int", "min": 18, "max": 100},
                "purpose": {"type": "category", "values": ["car", "home", "education", "other"]},
                "home_ownership": {"type": "category", "values": ["rent", "own", "mortgage"]},
                "defaulted": {"type": "int", "values": [0, 1]},
            },
            "nullable": ["income"],
            "row_count": {"min": 500},
        },
        features={
            "numeric": ["income", "age", "employment_years", "debt_ratio", "credit_lines"],
            "categorical": ["purpose", "home_ownership"],
            "split": {"test_size": 0.25, "seed": 7},
        },
        models=[
            {
                "name": "logreg",
                "estimator": "sklearn.linear_model.LogisticRegression",
                "params": {"max_iter": 300, "C": c},
            }
        ],
        selection={"cv_folds": 2},
        # 3,000 rows put the holdout roc_auc near 0.67; the second version must pass the gate too
        evaluation={"metrics": ["roc_auc", "accuracy"], "bootstrap_samples": 10,
                    "gate": {"min": 0.55, "max_regression": 1.0}},
        serving={"max_records": MAX_RECORDS},
        monitoring={"production_data": {"kind": "prediction_log"}},
    )


# ------------------------------------------------------------------ fixtures


@dataclass
class Platform:
    root: Path
    spec: PipelineSpec
    first: str  # the older version
    second: str  # the champion once both are trained

    def env(self, **extra: str) -> dict[str, str]:
        return {"ML_PIPELINES_HOME": str(self.root), "BENTOML_HOME": str(self.root / "bentoml"), **extra}

    def champion(self) -> str:
        return registry_at(self.root).get_alias(PIPELINE, "champion")


@pytest.fixture(scope="module")
def platform(trained_versions, tmp_path_factory) -> Platform:
    """This module's copy of the two trained versions (serving/conftest.py)."""
    root = trained_versions.copy_to(tmp_path_factory.mktemp("serving") / "platform")
    return Platform(root, trained_versions.spec, trained_versions.first, trained_versions.second)


@dataclass
class Service:
    server: ServerProcess
    url: str
    platform: Platform


@contextlib.contextmanager
def _serving(platform: Platform, tmp: Path, name: str, **env: str) -> Iterator[Service]:
    """`ml-pipelines serve` started (not yet ready: see Service.server.wait_ready) and, on the
    way out, stopped by process group."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with running(
        name,
        [venv_executable("ml-pipelines"), "serve", PIPELINE, "--host", "127.0.0.1", "--port", str(port)],
        log_path=tmp / f"{name}.log",
        env=platform.env(**{
            "ML_PIPELINES_WATCH_SECONDS": "0.5", "ML_PIPELINES_AUDIT": "on", "ML_PIPELINES_API_KEYS": "",
            "ML_PIPELINES_SERVING": "", **env,
        }),
        ready=f"{url}/readyz",
        ready_timeout=READY_TIMEOUT_S,
        wait=False,
    ) as server:
        yield Service(server, url, platform)
    assert server.stopped, f"{server.name} had no processes to stop"


@pytest.fixture(scope="module")
def servers(platform, tmp_path_factory) -> Iterator[dict[str, Service]]:
    """Both servers start together (startup dominates), each in its own process group:
    `open` without auth, `auth` with two API keys. Both are stopped, even when stopping
    the other one fails."""
    tmp = tmp_path_factory.mktemp("serve")
    keys = ",".join(f"{key_id}:{hashlib.sha256(key.encode()).hexdigest()}" for key_id, key in API_KEYS.items())
    with contextlib.ExitStack() as stack:
        started = {
            "open": stack.enter_context(_serving(platform, tmp, "model-service")),
            "auth": stack.enter_context(_serving(platform, tmp, "model-service-auth", ML_PIPELINES_API_KEYS=keys)),
        }
        for service in started.values():
            service.server.wait_ready()
        yield started


@pytest.fixture(scope="module")
def service(servers) -> Service:
    return servers["open"]


@pytest.fixture(scope="module")
def auth_service(servers) -> Service:
    return servers["auth"]


@pytest.fixture(scope="module")
def client(service) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.url, timeout=60.0, trust_env=False) as http:
        yield http


def sample_records(n: int, seed: int) -> tuple[list[dict[str, Any]], pd.DataFrame]:
    """n request records from the generator (with its missing incomes) and the same rows as a frame."""
    frame = generate(rows=n, seed=seed)[INPUTS]
    records = [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        for row in json.loads(frame.to_json(orient="records"))
    ]
    return records, frame


RECORDS, RECORDS_FRAME = sample_records(400, seed=101)
assert RECORDS_FRAME["income"].isna().any(), "the sample must hold a null income"


def model_inputs(platform: Platform) -> ModelInputs:
    return registry_at(platform.root).get_version(PIPELINE, platform.second).features


def record(i: int = 0, **changes: Any) -> dict[str, Any]:
    return {**RECORDS[i % len(RECORDS)], **changes}


def error_text(response: httpx.Response) -> str:
    """Every 4xx, whoever makes it, is {"error": {"status": <the status>, "message": ...}} and nothing else."""
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, body
    assert set(body["error"]) == {"status", "message"} and body["error"]["status"] == response.status_code, body
    return body["error"]["message"]


def unseen_count(metrics_text: str, column: str) -> float:
    pattern = re.compile(r"^ml_pipelines_unseen_categories_total\{([^}]*)\} (\S+)$", re.M)
    total = 0.0
    for labels, value in pattern.findall(metrics_text):
        if f'column="{column}"' in labels and f'pipeline="{PIPELINE}"' in labels:
            total += float(value)
    return total


AUDIT_LINE = re.compile(
    r"^(?P<ts>\S+) (?P<request_id>[0-9a-f]+)#(?P<index>\d+) caller=(?P<caller>\S+) version=(?P<version>\S+)"
    r" input=(?P<input>\{.*\}) output=(?P<output>\{.*\})$"
)


def audit_lines(platform: Platform, *args: str) -> list[dict[str, Any]]:
    """`ml-pipelines audit` as a subprocess, parsed line by line."""
    result = subprocess.run(
        [venv_executable("ml-pipelines"), "audit", PIPELINE, *args],
        cwd=REPO_ROOT, env={**os.environ, **platform.env()}, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = []
    for line in result.stdout.splitlines():
        match = AUDIT_LINE.match(line)
        if match is None:
            lines.append({"raw": line})
            continue
        parsed = match.groupdict()
        parsed["index"] = int(parsed["index"])
        parsed["input"] = json.loads(parsed["input"])
        parsed["output"] = json.loads(parsed["output"])
        lines.append(parsed)
    return lines


@dataclass
class Outcome:
    status: int | None
    body: Any
    error: str | None
    records: int
    started: float
    finished: float


async def _post_many(
    url: str, payloads: list[dict[str, Any]], concurrency: int, headers: dict[str, str] | None = None
) -> list[Outcome]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60.0, limits=limits, trust_env=False) as http:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(len(payloads)):
            queue.put_nowait(i)
        outcomes: list[Outcome | None] = [None] * len(payloads)

        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                started = time.monotonic()
                try:
                    response = await http.post("/predict", json=payloads[i], headers=headers)
                    body = response.json() if response.status_code == 200 else response.text
                    outcomes[i] = Outcome(response.status_code, body, None, len(payloads[i]["records"]),
                                          started, time.monotonic())
                except httpx.HTTPError as exc:
                    outcomes[i] = Outcome(None, None, f"{type(exc).__name__}: {exc}", len(payloads[i]["records"]),
                                          started, time.monotonic())

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return [o for o in outcomes if o is not None]


def failures(outcomes: list[Outcome]) -> list[str]:
    first = min((o.started for o in outcomes), default=0.0)
    return [
        f"{o.error or f'HTTP {o.status}: {str(o.body)[:200]}'} (sent at +{o.started - first:.1f}s,"
        f" failed after {o.finished - o.started:.2f}s)"
        for o in outcomes if o.status != 200
    ]


# ------------------------------------------------------------------ health


def test_health_endpoints_answer(client):
    for path in ("/readyz", "/livez", "/metrics"):
        response = client.get(path)
        assert response.status_code == 200, (path, response.text[:300])
    metrics = client.get("/metrics").text
    assert "# TYPE bentoml_service_request_in_progress" in metrics, metrics[:500]
    unknown = client.get("/no-such-route")  # BentoML's own 404, in the one error shape
    assert unknown.status_code == 404 and error_text(unknown)


# ------------------------------------------------------------------ predictions


def test_valid_request_returns_predictions_probabilities_and_the_champion(client, platform):
    records = [record(i) for i in range(5)]
    assert any(r["income"] is None for r in RECORDS), "a nullable column is exercised"
    records[0] = record(0, income=None)  # null where the spec allows it
    response = client.post("/predict", json={"records": records})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"request_id", "model_version", "predictions", "probabilities"}
    assert re.fullmatch(r"[0-9a-f]{32}", body["request_id"])
    assert body["model_version"] == platform.champion() == platform.second
    assert len(body["predictions"]) == len(body["probabilities"]) == len(records)
    classes = registry_at(platform.root).get_version(PIPELINE, platform.second).classes
    assert sorted(classes) == [0, 1]
    for prediction, probabilities in zip(body["predictions"], body["probabilities"]):
        assert set(probabilities) == {"0", "1"}  # keyed by class label
        assert sum(probabilities.values()) == pytest.approx(1.0)
        assert prediction in (0, 1)
        assert str(prediction) == max(probabilities, key=probabilities.get)


def test_served_prediction_equals_in_process_prediction(client, platform):
    records, frame = RECORDS[:MAX_RECORDS], RECORDS_FRAME.iloc[:MAX_RECORDS]
    response = client.post("/predict", json={"records": records})
    assert response.status_code == 200, response.text
    body = response.json()
    version = body["model_version"]
    registry = registry_at(platform.root)
    model = registry.load_model(PIPELINE, version, trusted_roots(platform.spec))
    expected, proba = predict(model, frame.reset_index(drop=True), "classification")
    assert body["predictions"] == [int(p) for p in expected]
    labels = [str(c) for c in model.classes_]
    served = np.array([[p[label] for label in labels] for p in body["probabilities"]])
    np.testing.assert_allclose(served, proba, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------ the served API, as /docs.json says

JSON_TYPES = {"float": "number", "int": "integer", "bool": "boolean", "category": "string", "str": "string",
              "datetime": "string"}


def _resolved(docs: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    return docs["components"]["schemas"][ref.rsplit("/", 1)[1]] if ref else schema


def _json_types(field: dict[str, Any]) -> list[str]:
    return [option["type"] for option in field["anyOf"]] if "anyOf" in field else [field["type"]]


def test_docs_json_types_every_feature_the_answer_and_the_api_key(client, auth_service, platform):
    served = registry_at(platform.root).get_version(PIPELINE, platform.second)
    docs = client.get("/docs.json").json()
    assert docs["info"]["title"] == f"{PIPELINE} model service" and docs["info"]["version"] == platform.second
    assert PIPELINE in docs["info"]["description"]
    predict_op = docs["paths"]["/predict"]["post"]
    request = _resolved(docs, predict_op["requestBody"]["content"]["application/json"]["schema"])
    assert request["required"] == ["records"]
    record_schema = _resolved(docs, request["properties"]["records"]["items"])
    assert sorted(record_schema["required"]) == sorted(served.features.inputs) == sorted(INPUTS)
    assert record_schema["additionalProperties"] is False
    for column in served.features.inputs:
        kind, nullable = served.features.type_of(column), served.features.is_nullable(column)
        expected = [JSON_TYPES[kind]] + (["null"] if nullable else [])
        assert _json_types(record_schema["properties"][column]) == expected, (column, record_schema["properties"][column])
    assert _json_types(record_schema["properties"]["income"]) == ["number", "null"]  # the spec's nullable column
    age = record_schema["properties"]["age"]
    assert (age["type"], age["minimum"], age["maximum"]) == ("integer", 18, 100)  # the spec's range
    assert "car" in record_schema["properties"]["purpose"]["description"]  # the known categories
    answer = _resolved(docs, predict_op["responses"]["200"]["content"]["application/json"]["schema"])
    assert set(answer["properties"]) == {"request_id", "model_version", "predictions", "probabilities"}
    assert set(answer["required"]) == {"request_id", "model_version", "predictions"}
    assert answer["properties"]["predictions"]["items"] == {"type": "integer"}  # the class labels 0 and 1
    assert answer["properties"]["probabilities"]["items"]["additionalProperties"] == {"type": "number"}
    error = {"$ref": "#/components/schemas/Error"}
    for status in ("400", "413"):
        assert predict_op["responses"][status]["content"]["application/json"]["schema"] == error
    assert docs["components"]["securitySchemes"]["apiKey"]["type"] == "http"
    assert docs["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    assert "security" not in predict_op and "401" not in predict_op["responses"]  # this one runs without keys
    assert "409" in docs["paths"]["/feedback"]["post"]["responses"] and "409" not in predict_op["responses"]
    guarded = httpx.get(f"{auth_service.url}/docs.json", timeout=60.0, trust_env=False).json()  # docs need no key
    for route in ("/predict", "/feedback"):
        operation = guarded["paths"][route]["post"]
        assert operation["security"] == [{"apiKey": []}], route
        assert operation["responses"]["401"]["content"]["application/json"]["schema"] == error


def test_a_pandas_client_sends_integral_floats_for_int_inputs(service, client):
    """An int column with a NaN loads as float64: such a client sends 40.0 for 40 (BentoML's own client)."""
    frame = RECORDS_FRAME.iloc[:5].astype({"age": "float64", "credit_lines": "float64"})
    records = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
               for row in frame.to_dict(orient="records")]
    assert isinstance(records[0]["age"], float) and records[0]["age"].is_integer()
    with bentoml.SyncHTTPClient(service.url, timeout=60) as http:
        answer = http.predict(records=records)
        with pytest.raises(BentoMLException) as refused:
            http.predict(records=[records[0], {**records[1], "age": 40.5}])
    assert answer["predictions"] == client.post("/predict", json={"records": RECORDS[:5]}).json()["predictions"]
    assert "400" in str(refused.value) and "records[1].age" in str(refused.value)


# ------------------------------------------------------------------ bad requests

VALID = RECORDS[1]
TOO_MANY = {"records": [VALID] * (MAX_RECORDS + 1)}
BAD_REQUESTS = {
    # name: (json body or raw bytes, status, fragments every message must hold)
    "missing_field": ({"records": [VALID, {k: v for k, v in VALID.items() if k != "age"}]}, 400,
                      ["records[1].age", "missing"]),
    "extra_field": ({"records": [VALID, VALID, {**VALID, "dependents": 2}]}, 400,
                    ["records[2].dependents", "unknown field"]),
    "wrong_type_int": ({"records": [{**VALID, "age": "forty"}]}, 400, ["records[0].age", "integer", "forty"]),
    "float_for_int": ({"records": [VALID, {**VALID, "credit_lines": 4.5}]}, 400, ["records[1].credit_lines", "integer"]),
    "wrong_type_category": ({"records": [{**VALID, "purpose": 3}]}, 400, ["records[0].purpose", "string"]),
    "bool_for_float": ({"records": [{**VALID, "debt_ratio": True}]}, 400, ["records[0].debt_ratio"]),
    "null_not_allowed": ({"records": [VALID, VALID, VALID, {**VALID, "debt_ratio": None}]}, 400,
                         ["records[3].debt_ratio", "null is not allowed"]),
    "null_category": ({"records": [{**VALID, "home_ownership": None}]}, 400,
                      ["records[0].home_ownership", "null is not allowed"]),
    "infinite_float": (b'{"records": [{"income": 1e400, "age": 40, "employment_years": 1.0, "debt_ratio": 0.2,'
                       b' "credit_lines": 3, "purpose": "car", "home_ownership": "rent"}]}', 400,
                       ["records[0].income", "finite"]),
    "nan_float": (b'{"records": [{"income": 1.0, "age": 40, "employment_years": 1.0, "debt_ratio": NaN,'
                  b' "credit_lines": 3, "purpose": "car", "home_ownership": "rent"}]}', 400,
                  ["records[0].debt_ratio", "finite"]),
    "huge_int": ({"records": [{**VALID, "age": 10**40}]}, 400, ["records[0].age"]),
    "record_not_object": ({"records": [VALID, [1, 2]]}, 400, ["records[1]", "object"]),
    "empty_records": ({"records": []}, 400, ["records", "empty"]),
    "too_many_records": (TOO_MANY, 413, ["records", str(MAX_RECORDS + 1), f"at most {MAX_RECORDS}"]),
    "records_not_a_list": ({"records": {"age": 1}}, 400, ["records", "array"]),
    "no_records_key": ({"rows": [VALID]}, 400, ["records", "missing"]),
    "not_json": (b"income=1&age=2", 400, ["json"]),
    "truncated_json": (b'{"records": [{"income": 1.0,', 400, ["json"]),
    # the version's schema: the spec's ranges (age 18..100, income >= 0) and inferred ones
    "below_min": ({"records": [{**VALID, "age": -5}]}, 400, ["records[0].age", "must be >= 18", "-5"]),
    "above_max": ({"records": [VALID, VALID, {**VALID, "age": 101}]}, 400, ["records[2].age", "must be <= 100"]),
    "negative_float": ({"records": [{**VALID, "income": -0.01}]}, 400, ["records[0].income", "must be >= 0"]),
    "long_string": ({"records": [VALID, {**VALID, "purpose": "car" * 400}]}, 400,
                    ["records[1].purpose", "at most 1000 characters", "got 1200"]),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_request_is_a_4xx_naming_record_and_field(client, case):
    body, status, fragments = BAD_REQUESTS[case]
    if isinstance(body, bytes):
        response = client.post("/predict", content=body, headers={"content-type": "application/json"})
    else:
        response = client.post("/predict", json=body)
    assert response.status_code == status, (case, response.status_code, response.text[:500])
    message = error_text(response).lower()
    for fragment in fragments:
        assert fragment.lower() in message, (case, fragment, message[:500])


def test_service_still_answers_after_bad_requests(client, platform):
    before = client.post("/predict", json={"records": [record(7)]})
    assert before.status_code == 200
    for body, _, _ in BAD_REQUESTS.values():
        if isinstance(body, bytes):
            client.post("/predict", content=body, headers={"content-type": "application/json"})
        else:
            client.post("/predict", json=body)
    assert client.get("/readyz").status_code == 200
    assert client.get("/livez").status_code == 200
    after = client.post("/predict", json={"records": [record(7)]})
    assert after.status_code == 200, after.text
    assert after.json()["predictions"] == before.json()["predictions"]
    assert after.json()["probabilities"] == before.json()["probabilities"]


def test_unseen_category_is_served_and_counted(client):
    before = client.get("/metrics").text
    records = [record(i, purpose="crypto") for i in range(3)] + [record(9, home_ownership="houseboat")]
    response = client.post("/predict", json={"records": records})
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == 4
    after = client.get("/metrics").text
    assert unseen_count(after, "purpose") - unseen_count(before, "purpose") == 3
    assert unseen_count(after, "home_ownership") - unseen_count(before, "home_ownership") == 1


def test_values_at_the_schema_bounds_are_answered(client):
    records = [record(0, age=18, income=0.0), record(1, age=100, purpose="c" * 1000)]
    response = client.post("/predict", json={"records": records})
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == 2


def test_a_value_beyond_an_inferred_range_is_served(client, platform):
    """Ranges inferred from the training data guard training data, not requests: a shifted world
    is served (and shows up as drift); only the spec's declared ranges answer 400."""
    rule = registry_at(platform.root).get_version(PIPELINE, platform.second).schema.rule("credit_lines")
    assert rule.max is not None and "max" not in rule.declared  # credit_lines has an inferred max only
    response = client.post("/predict", json={"records": [record(0, credit_lines=int(rule.max) + 100)]})
    assert response.status_code == 200, response.text


def test_a_long_string_is_not_echoed_in_the_error(client):
    response = client.post("/predict", json={"records": [record(0, home_ownership="q" * 5000)]})
    assert response.status_code == 400
    message = error_text(response)
    assert "records[0].home_ownership" in message and "5000" in message
    assert "q" * 50 not in message and len(message) < 300, message[:400]


MARKER = "bodylimit-marker-"
DEFAULT_MAX_BODY = 1_048_576  # serving.max_body_bytes


def _huge_body(size: int) -> bytes:
    """A well-formed request whose one string field makes the body `size` bytes or more."""
    return json.dumps({"records": [record(0, purpose=MARKER + "x" * size)]}).encode()


def test_a_body_over_max_body_bytes_is_refused_before_it_is_parsed(client, platform):
    huge = _huge_body(10 * 1024 * 1024)  # the fault: a 10 MB string
    declared = client.post("/predict", content=huge, headers={"content-type": "application/json"})
    assert declared.status_code == 413, declared.text[:300]
    assert "max_body_bytes" in error_text(declared) and str(DEFAULT_MAX_BODY) in error_text(declared)

    def chunks():  # no Content-Length: the size is counted as the body streams in
        for start in range(0, len(huge), 64 * 1024):
            yield huge[start:start + 64 * 1024]

    streamed = client.post("/predict", content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in streamed.request.headers
    assert streamed.status_code == 413, streamed.text[:300]
    assert "max_body_bytes" in error_text(streamed)
    just_over = _huge_body(DEFAULT_MAX_BODY)
    assert client.post("/predict", content=just_over, headers={"content-type": "application/json"}).status_code == 413
    # under the body limit but over the string limit: a 400 naming the field
    long_string = client.post("/predict", json={"records": [record(0, purpose=MARKER + "x" * 5000)]})
    assert long_string.status_code == 400 and "records[0].purpose" in error_text(long_string)
    # nothing over a limit was predicted or audited, and the service answers on
    assert client.post("/predict", json={"records": [record(2)]}).status_code == 200
    assert client.get("/readyz").status_code == 200
    logged = [line for line in audit_lines(platform) if "request_id" in line]
    assert logged and not [line for line in logged if MARKER in json.dumps(line["input"])]


def test_metrics_say_the_served_version_is_the_champion(client):
    metrics = client.get("/metrics").text
    assert f'ml_pipelines_served_version_is_champion{{pipeline="{PIPELINE}"}} 1.0' in metrics, metrics[-2000:]


def _raw_post(sock: socket.socket, port: int, body: bytes) -> int:
    """POST /predict on an open connection; the status, once the whole response is read."""
    sock.sendall(
        f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode() + body
    )
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?im)^content-length:\s*(\d+)", head).group(1))
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection mid-response"
        rest += chunk
    return int(head.split()[1])


def test_idle_keep_alive_connection_is_not_closed_under_the_client(service):
    """Clients (httpx, load balancers) reuse a connection idle for up to 5-60 s; a server that
    closes it first makes the next request on it fail with a reset."""
    port = int(service.url.rsplit(":", 1)[1])
    body = json.dumps({"records": [record(5)]}).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        assert _raw_post(sock, port, body) == 200
        time.sleep(6.5)  # longer than uvicorn's default keep-alive (5 s)
        assert _raw_post(sock, port, body) == 200


# ------------------------------------------------------------------ load and audit


@pytest.fixture(scope="module")
def load_run(service) -> tuple[list[Outcome], float]:
    """LOAD_REQUESTS requests of one to three records each at LOAD_CONCURRENCY."""
    payloads = [{"records": [record(i + j) for j in range(1 + i % 3)]} for i in range(LOAD_REQUESTS)]
    started = time.monotonic()
    outcomes = asyncio.run(_post_many(service.url, payloads, LOAD_CONCURRENCY))
    return outcomes, time.monotonic() - started


def test_concurrent_requests_all_succeed(load_run, platform):
    outcomes, wall = load_run
    assert len(outcomes) == LOAD_REQUESTS
    problems = failures(outcomes)
    assert not problems, f"{len(problems)} of {LOAD_REQUESTS} failed in {wall:.0f}s: {problems[:5]}"
    ids = {o.body["request_id"] for o in outcomes}
    assert len(ids) == LOAD_REQUESTS, "request ids are unique"
    assert {o.body["model_version"] for o in outcomes} == {platform.second}
    assert all(len(o.body["predictions"]) == o.records for o in outcomes)


def test_every_prediction_is_in_the_audit_trail(load_run, platform):
    outcomes, _ = load_run
    sent = {o.body["request_id"]: o for o in outcomes if o.status == 200}
    lines = [line for line in audit_lines(platform) if "request_id" in line]
    ours = [line for line in lines if line["request_id"] in sent]
    assert len(ours) == sum(o.records for o in sent.values()), "one audit line per predicted record"
    seen: dict[str, set[int]] = {}
    for line in ours:
        outcome = sent[line["request_id"]]
        assert line["version"] == outcome.body["model_version"] == platform.second
        assert line["caller"] == "-"  # auth is off
        assert line["output"]["prediction"] == outcome.body["predictions"][line["index"]]
        assert line["output"]["probabilities"] == outcome.body["probabilities"][line["index"]]
        assert set(line["input"]) == set(INPUTS)
        seen.setdefault(line["request_id"], set()).add(line["index"])
    assert all(seen[rid] == set(range(o.records)) for rid, o in sent.items())
    # oldest first
    stamps = [line["ts"] for line in lines]
    assert stamps == sorted(stamps)
    # --limit and --since
    assert len([line for line in audit_lines(platform, "--limit", "5") if "request_id" in line]) == 5
    future = audit_lines(platform, "--since", "2999-01-01")
    assert future == [{"raw": f"no predictions logged for {PIPELINE} since 2999-01-01"}]


def test_prediction_log_feeds_production_data(client, platform):
    records = [record(200 + i) for i in range(6)]
    response = client.post("/predict", json={"records": records})
    assert response.status_code == 200, response.text
    request_id = response.json()["request_id"]
    lines = [line for line in audit_lines(platform) if "request_id" in line]
    day = next(line["ts"][:10] for line in lines if line["request_id"] == request_id)
    now = datetime.now(UTC)
    assert day in {now.strftime("%Y-%m-%d"), (now - timedelta(days=1)).strftime("%Y-%m-%d")}
    defs = dg.Definitions.merge(
        build_pipeline_defs(platform.spec), dg.Definitions(resources=local_resources(platform.root))
    )
    key = dg.AssetKey([PIPELINE, "production_data"])
    job = defs.resolve_job_def(f"{PIPELINE}_monitor_job")
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(
            partition_key=day, instance=instance, asset_selection=[key], raise_on_error=False
        )
        assert result.success
        frame = result.asset_value(key)
        events = result.get_asset_materialization_events()
    assert [e.partition for e in events] == [day]
    ours = frame[frame["request_id"] == request_id].reset_index(drop=True)
    assert len(ours) == len(records)
    assert set(INPUTS) <= set(frame.columns) and {"model_version", "prediction", "caller", "timestamp"} <= set(frame.columns)
    assert list(ours["prediction"]) == response.json()["predictions"]
    assert (ours["model_version"] == response.json()["model_version"]).all()
    for column in ("age", "purpose", "debt_ratio"):
        assert list(ours[column]) == [r[column] for r in records]
    # one row per prediction logged that day, whichever process wrote it
    assert len(frame) == len([line for line in lines if line["ts"].startswith(day)])
    assert set(frame["request_id"]) == {line["request_id"] for line in lines if line["ts"].startswith(day)}


# ------------------------------------------------------------------ the two routes


def _scored(client: httpx.Client) -> dict[str, float]:
    """ml_pipelines_scored_requests by route: the gateway's own copy (inline) or the predictor."""
    found = re.findall(r'^ml_pipelines_scored_requests_total\{([^}]*)\} (\S+)$', client.get("/metrics").text, re.M)
    return {route: sum(float(v) for labels, v in found if f'route="{route}"' in labels)
            for route in ("inline", "predictor")}


def test_an_idle_service_answers_in_process_and_a_busy_one_batches_the_same_answers(service, client, platform):
    records = [record(300 + i) for i in range(12)]
    deadline = time.monotonic() + 30  # the gateway's copy answers once a poll saw the predictor serve its version
    while _scored(client)["inline"] == 0 and time.monotonic() < deadline:
        assert client.post("/predict", json={"records": [record(299)]}).status_code == 200
        time.sleep(0.2)
    before = _scored(client)
    alone = [client.post("/predict", json={"records": [r]}).json() for r in records]
    between = _scored(client)
    assert between["inline"] - before["inline"] == len(records), "one request at a time: no hop to the predictor"
    assert between["predictor"] == before["predictor"]
    # by now the copy answers on the gateway's event loop (InlineRoute.quick): a burst must still reach
    # the predictor, counted (CountRequests) before the first of it decides
    assert len(records) > InlineRoute.TIMED_ANSWERS
    payloads = [{"records": [r]} for r in records for _ in range(8)]
    outcomes = asyncio.run(_post_many(service.url, payloads, 32))
    assert not failures(outcomes), failures(outcomes)[:5]
    assert _scored(client)["predictor"] - between["predictor"] > 0, "under load the predictor batches"
    model = registry_at(platform.root).load_model(PIPELINE, platform.second, trusted_roots(platform.spec))
    labels = [str(c) for c in model.classes_]
    for i, answer in enumerate(alone):
        expected, proba = predict(model, records_to_frame([records[i]], model_inputs(platform)), "classification")
        assert answer["model_version"] == platform.second
        assert answer["predictions"] == [int(expected[0])]
        assert [answer["probabilities"][0][label] for label in labels] == list(proba[0]), "the in-process answer"
    for payload, outcome in zip(payloads, outcomes):
        first = alone[records.index(payload["records"][0])]
        assert outcome.body["model_version"] == first["model_version"]
        assert outcome.body["predictions"] == first["predictions"]
        # a batch's matrix product may round the last bit differently from a one-row call's
        np.testing.assert_allclose([outcome.body["probabilities"][0][k] for k in labels],
                                   [first["probabilities"][0][k] for k in labels], rtol=1e-12, atol=0)


# ------------------------------------------------------------------ auth


def test_api_keys_are_enforced_and_the_caller_is_audited(auth_service, platform):
    with httpx.Client(base_url=auth_service.url, timeout=60.0, trust_env=False) as http:
        body = {"records": [record(3), record(4)]}
        missing = http.post("/predict", json=body)
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        assert error_text(missing) == "no API key: send `Authorization: Bearer <key>`"
        for header, problem in ((f"Bearer {API_KEY}x", "the API key is not valid"),
                                ("Bearer", "the Authorization header is not `Bearer <key>`"),
                                (f"Basic {API_KEY}", "the Authorization header is not `Bearer <key>`"),
                                (API_KEY, "the Authorization header is not `Bearer <key>`"),
                                (f"Bearer {API_KEY[:-1]}", "the API key is not valid")):
            response = http.post("/predict", json=body, headers={"Authorization": header})
            assert response.status_code == 401, (header, response.text)
            assert error_text(response) == problem and API_KEY[:6] not in response.text, header
        assert error_text(http.post("/feedback", json={"records": []})).startswith("no API key")
        # probes stay open so the orchestrator can check health without a key
        assert http.get("/readyz").status_code == 200
        assert http.get("/livez").status_code == 200
        ok = http.post("/predict", json=body, headers={"Authorization": f"Bearer {API_KEY}"})
        assert ok.status_code == 200, ok.text
        other = http.post("/predict", json=body, headers={"authorization": f"bearer {OTHER_KEY}"})
        assert other.status_code == 200, other.text
        # a bad request with a valid key is still a 400, not a 401
        bad = http.post("/predict", json={"records": [{**record(3), "age": None}]},
                        headers={"Authorization": f"Bearer {API_KEY}"})
        assert bad.status_code == 400 and "records[0].age" in error_text(bad)
    # BentoML's own client, with the key as its token
    with bentoml.SyncHTTPClient(auth_service.url, token=API_KEY, timeout=60) as client:
        assert len(client.predict(records=[record(3)])["predictions"]) == 1
    lines = [line for line in audit_lines(platform) if "request_id" in line]
    for response, caller in ((ok, "tester"), (other, "ops")):
        logged = [line for line in lines if line["request_id"] == response.json()["request_id"]]
        assert sorted(line["index"] for line in logged) == [0, 1]
        assert {line["caller"] for line in logged} == {caller}
    # refused requests were never predicted, so never audited
    assert sum(1 for line in lines if line["caller"] in ("tester", "ops")) == 5


# ------------------------------------------------------------------ champion hot swap


def test_promotion_switches_the_running_service_without_failures(service, platform):
    old = platform.champion()
    new = platform.first if old == platform.second else platform.second
    promoted_at: list[float] = []

    async def scenario() -> list[Outcome]:
        stop = asyncio.Event()
        outcomes: list[Outcome] = []
        limits = httpx.Limits(max_connections=8, max_keepalive_connections=8)
        async with httpx.AsyncClient(base_url=service.url, timeout=60.0, limits=limits, trust_env=False) as http:
            counter = iter(range(10**9))

            async def stream() -> None:
                while not stop.is_set():
                    i = next(counter)
                    started = time.monotonic()
                    try:
                        response = await http.post("/predict", json={"records": [record(i)]})
                        body = response.json() if response.status_code == 200 else response.text
                        outcomes.append(Outcome(response.status_code, body, None, 1, started, time.monotonic()))
                    except httpx.HTTPError as exc:
                        outcomes.append(Outcome(None, None, repr(exc), 1, started, time.monotonic()))

            async def promote() -> None:
                try:
                    await asyncio.sleep(2.0)  # the stream is under way
                    process = await asyncio.create_subprocess_exec(
                        venv_executable("ml-pipelines"), "registry", "promote", PIPELINE, new,
                        "--reason", "hot swap test", cwd=REPO_ROOT, env={**os.environ, **platform.env()},
                        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                    )
                    out, err = await process.communicate()
                    assert process.returncode == 0, err.decode()[-2000:]
                    assert f"champion {old} -> {new}" in out.decode()
                    promoted_at.append(time.monotonic())
                    # stream on until 30 requests that started 5 s after the promotion have been answered
                    deadline = time.monotonic() + 90
                    while time.monotonic() < deadline:
                        settled = [o for o in outcomes if o.started > promoted_at[0] + 5.0]
                        if len(settled) >= 30:
                            break
                        await asyncio.sleep(0.2)
                finally:
                    stop.set()

            await asyncio.gather(promote(), *(stream() for _ in range(8)))
        return outcomes

    outcomes = asyncio.run(scenario())
    assert not failures(outcomes), failures(outcomes)[:5]
    assert platform.champion() == new
    versions = [o.body["model_version"] for o in sorted(outcomes, key=lambda o: o.started)]
    assert old in versions and new in versions, set(versions)
    assert versions[0] == old
    # the swap is one reference: once any answer came from the new model, every request
    # that started after that answer gets the new model too
    first_new_answer = min(o.finished for o in outcomes if o.body["model_version"] == new)
    later = [o.body["model_version"] for o in outcomes if o.started > first_new_answer]
    assert later and set(later) == {new}
    assert first_new_answer - promoted_at[0] < 5.0, "the watcher polls every 0.5 s"
    settled = [o for o in outcomes if o.started > promoted_at[0] + 5.0]
    assert len(settled) >= 30 and {o.body["model_version"] for o in settled} == {new}
    # the service answers with the new champion afterwards, and the audit trail says so
    with httpx.Client(base_url=service.url, timeout=60.0, trust_env=False) as http:
        response = http.post("/predict", json={"records": [record(0)]})
    assert response.status_code == 200 and response.json()["model_version"] == new
    audited = {line["request_id"]: line["version"] for line in audit_lines(platform) if "request_id" in line}
    assert all(audited[o.body["request_id"]] == o.body["model_version"] for o in outcomes)
