"""The report server (`ml-pipelines reports`): model cards and Data Docs over HTTP, read-only,
and nothing else under the platform home; report URLs for local files."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ml_pipelines.core.reports import local_report_url, report_server
from ml_pipelines_tests import servers

DOCS = "work/credit/gx/uncommitted/data_docs/local_site"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    files = {
        "registry/credit/cards/run-1.html": "<h1>card</h1>",
        "registry/credit/run-1/model.pkl": "secret model",
        f"{DOCS}/validations/credit_raw_data/abc/20261130T000000Z/pipeline-raw_data.html": "<p>docs</p>",
        f"{DOCS}/index.html": "<p>index</p>",
        "audit/credit/2026-11-30.jsonl": "{}",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    server = report_server(tmp_path, "127.0.0.1", servers.free_port())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_serves_reports_only(served):
    home, url = served
    with httpx.Client(base_url=url, trust_env=False) as client:
        assert client.get("/healthz").status_code == 200
        card = client.get("/registry/credit/cards/run-1.html")
        assert card.status_code == 200 and card.text == "<h1>card</h1>"
        assert card.headers["content-type"].startswith("text/html")
        docs = client.get(f"/{DOCS}/validations/credit_raw_data/abc/20261130T000000Z/pipeline-raw_data.html")
        assert docs.status_code == 200 and docs.text == "<p>docs</p>"
        assert client.get(f"/{DOCS}/").text == "<p>index</p>"
        for path in ("/registry/credit/run-1/model.pkl", "/audit/credit/2026-11-30.jsonl", "/registry/",
                     f"/{DOCS}/../../../../../registry/credit/run-1/model.pkl",
                     "/registry/credit/cards/%2e%2e/run-1/model.pkl", "/"):
            assert client.get(path).status_code == 404, path
        assert client.put("/registry/credit/cards/run-1.html", content=b"x").status_code == 501
    assert (home / "registry/credit/cards/run-1.html").read_text() == "<h1>card</h1>"


def test_report_urls_for_local_files(tmp_path: Path):
    card = tmp_path / "registry" / "credit" / "cards" / "run-1.html"
    assert local_report_url(card, home=tmp_path, reports_url="http://h:1/") == \
        "http://h:1/registry/credit/cards/run-1.html"
    assert local_report_url(card.as_uri(), home=tmp_path, reports_url="http://h:1") == \
        "http://h:1/registry/credit/cards/run-1.html"
    assert local_report_url(tmp_path / "registry/credit/run-1/model.pkl", home=tmp_path, reports_url="http://h:1") is None
    assert local_report_url("/elsewhere/registry/credit/cards/run-1.html", home=tmp_path, reports_url="http://h:1") is None
