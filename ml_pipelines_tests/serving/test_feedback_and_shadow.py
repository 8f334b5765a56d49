"""POST /feedback and serving.shadow against a real `bentoml serve` (ml-pipelines serve):
feedback is checked (unknown request ids, records, labels and conflicts get a 4xx naming
the field), idempotent, and durable before the answer (a SIGKILL loses nothing
acknowledged, and the restarted service still knows it); with serving.shadow the
challenger scores every request, its prediction is in the audit trail under the same
request id and never in the answer."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ml_pipelines.core.labels import read_feedback
from ml_pipelines.core.prediction_log import iter_audit
from ml_pipelines_tests.helpers import registry_at
from ml_pipelines_tests.servers import free_port, running, venv_executable
from ml_pipelines_tests.serving.test_serving import (
    PIPELINE,
    READY_TIMEOUT_S,
    Platform,
    error_text,
    record,
)
from ml_pipelines_tests.serving.test_serving import platform as platform  # noqa: F401 - the trained registry

pytestmark = pytest.mark.timeout(600)


@contextlib.contextmanager
def _service(platform: Platform, log: Path, **env: str) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with running(
        "model-service (feedback, shadow)",
        [venv_executable("ml-pipelines"), "serve", PIPELINE, "--host", "127.0.0.1", "--port", str(port)],
        log_path=log, env=platform.env(ML_PIPELINES_WATCH_SECONDS="0.5", ML_PIPELINES_AUDIT="on",
                                       ML_PIPELINES_API_KEYS="", ML_PIPELINES_SERVING=json.dumps({"shadow": True}),
                                       **env),
        ready=f"{url}/readyz", ready_timeout=READY_TIMEOUT_S,
    ):
        yield url


@pytest.fixture(scope="module")
def shadowed(platform: Platform, tmp_path_factory) -> Iterator[str]:
    """The champion served with its predecessor as the challenger, shadow-scored."""
    registry_at(platform.root).set_alias(PIPELINE, "challenger", platform.first, actor="test", reason="shadow test")
    with _service(platform, tmp_path_factory.mktemp("shadow") / "serve.log") as url:
        yield url


def _predict(url: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    response = httpx.post(f"{url}/predict", json={"records": records}, timeout=60, trust_env=False)
    assert response.status_code == 200, response.text
    return response.json()


def _feedback(url: str, records: Any) -> httpx.Response:
    return httpx.post(f"{url}/feedback", json={"records": records}, timeout=60, trust_env=False)


def _audit(platform: Platform, request_id: str, *, shadow: bool = False) -> list[dict[str, Any]]:
    return [r for r in iter_audit(platform.root / "audit", PIPELINE, shadow=shadow) if r["request_id"] == request_id]


def _shadow_records(platform: Platform, request_id: str, count: int) -> list[dict[str, Any]]:
    """The challenger's scores, written after the answer: wait for them (a few seconds at most)."""
    deadline = time.monotonic() + 15
    while True:
        found = [r for r in _audit(platform, request_id, shadow=True) if r.get("shadow")]
        if len(found) >= count or time.monotonic() > deadline:
            return sorted(found, key=lambda r: r["index"])
        time.sleep(0.2)


def test_the_challenger_is_shadow_scored_and_never_answered(shadowed, platform):
    body = _predict(shadowed, [record(0), record(1)])
    assert body["model_version"] == platform.second
    assert "shadow" not in json.dumps(body)
    served = sorted(_audit(platform, body["request_id"]), key=lambda r: r["index"])
    assert [r["index"] for r in served] == [0, 1] and not any(r.get("shadow") for r in served)
    shadows = _shadow_records(platform, body["request_id"], 2)
    assert [r["index"] for r in shadows] == [0, 1]
    for logged, shadow in zip(served, shadows):
        assert logged["model_version"] == platform.second
        assert shadow["model_version"] == platform.first
        assert shadow["output"]["prediction"] in (0, 1)
        assert set(shadow["output"]["probabilities"]) == set(logged["output"]["probabilities"])
        assert "input" not in shadow  # the served record holds the input once
    trace = subprocess.run([venv_executable("ml-pipelines"), "trace", body["request_id"]], capture_output=True,
                           text=True, env={**os.environ, **platform.env()}, check=True).stdout
    assert trace.count(f"shadow {platform.first}") == 2, trace


def test_feedback_is_kept_and_a_repeat_counts_once(shadowed, platform):
    body = _predict(shadowed, [record(2), record(3)])
    request_id = body["request_id"]
    labels = [{"request_id": request_id, "index": 0, "label": 1}, {"request_id": request_id, "index": 1, "label": 0}]
    first = _feedback(shadowed, labels)
    assert first.status_code == 200, first.text
    assert first.json() == {"accepted": 2, "repeats": 0}
    again = _feedback(shadowed, labels[:1])
    assert again.json() == {"accepted": 0, "repeats": 1}
    kept = read_feedback(platform.root / "feedback", PIPELINE, "defaulted")
    mine = kept[kept["request_id"] == request_id].sort_values("index")
    assert mine["defaulted"].tolist() == [1, 0] and mine["index"].tolist() == [0, 1]


BAD_FEEDBACK = {
    "unknown_request": (lambda rid: [{"request_id": "f" * 32, "label": 1}], 404, "records[0].request_id"),
    "index_out_of_range": (lambda rid: [{"request_id": rid, "index": 5, "label": 1}], 404, "records[0].index"),
    "not_a_class": (lambda rid: [{"request_id": rid, "label": 7}], 400, "records[0].label: 7 is not one of"),
    "label_as_text": (lambda rid: [{"request_id": rid, "label": "1"}], 400, "records[0].label: '1' is not one of"),
    "missing_label": (lambda rid: [{"request_id": rid}], 400, "records[0].label: field is missing"),
    "unknown_field": (lambda rid: [{"request_id": rid, "label": 1, "why": "x"}], 400, "records[0].why: unknown field"),
    "no_records": (lambda rid: [], 400, "non-empty list"),
    "not_an_object": (lambda rid: ["oops"], 400, "records[0]: must be an object"),
}


@pytest.mark.parametrize("case", sorted(BAD_FEEDBACK))
def test_bad_feedback_gets_a_4xx_naming_the_field(shadowed, platform, case):
    request_id = _predict(shadowed, [record(4)])["request_id"]
    build, status, fragment = BAD_FEEDBACK[case]
    response = _feedback(shadowed, build(request_id))
    assert response.status_code == status, response.text
    assert fragment in error_text(response)
    kept = read_feedback(platform.root / "feedback", PIPELINE, "defaulted")
    assert request_id not in set(kept["request_id"])  # nothing of a refused request is kept


def test_a_conflicting_label_is_refused(shadowed):
    request_id = _predict(shadowed, [record(5)])["request_id"]
    assert _feedback(shadowed, [{"request_id": request_id, "label": 1}]).status_code == 200
    conflict = _feedback(shadowed, [{"request_id": request_id, "label": 0}])
    assert conflict.status_code == 409
    assert f"{request_id} record 0 already has label 1" in error_text(conflict)


def test_acknowledged_feedback_survives_a_sigkill(platform, tmp_path):
    with _service(platform, tmp_path / "first.log") as url:
        server_pids = _listening_pids(url)
        answers = []
        for i in range(20):
            request_id = _predict(url, [record(10 + i)])["request_id"]
            response = _feedback(url, [{"request_id": request_id, "label": i % 2}])
            assert response.status_code == 200, response.text
            answers.append((request_id, i % 2))
        for pid in server_pids:  # no goodbye: every process of the server at once
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    kept = read_feedback(platform.root / "feedback", PIPELINE, "defaulted")
    by_request = dict(zip(kept["request_id"], kept["defaulted"]))
    assert [(rid, by_request.get(rid)) for rid, _ in answers] == answers
    with _service(platform, tmp_path / "second.log") as url:  # the restarted service remembers both sides
        repeat = _feedback(url, [{"request_id": answers[0][0], "label": answers[0][1]}])
        assert repeat.json() == {"accepted": 0, "repeats": 1}


def _listening_pids(url: str) -> list[int]:
    import psutil

    port = int(url.rsplit(":", 1)[1])
    pids = {c.pid for c in psutil.net_connections("tcp") if c.laddr and c.laddr.port == port and c.pid}
    deadline = time.monotonic() + 10
    while not pids and time.monotonic() < deadline:
        time.sleep(0.2)
        pids = {c.pid for c in psutil.net_connections("tcp") if c.laddr and c.laddr.port == port and c.pid}
    family = set()
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            process = psutil.Process(pid)
            family |= {pid, process.ppid(), *(c.pid for c in process.children(recursive=True))}
    return sorted(family)
