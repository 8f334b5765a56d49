"""Links an analyst can open in a browser: the model cards and Great Expectations Data Docs.

Chromium refuses file:// links from an http:// page, so reports are served over HTTP:
locally by a small read-only server over the platform home that answers only report
paths (model cards, Data Docs; never models, data or audit logs), in prod by presigned
S3 URLs that expire."""

from __future__ import annotations

import re
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from ml_pipelines.core.storage import LocalObjectStore, ObjectStore, S3ObjectStore

HEALTH_PATH = "healthz"  # 200 when the server is up
PRESIGNED_TTL_S = 7 * 24 * 3600  # the longest a SigV4 presigned URL may live
# the only files the report server answers, relative to the platform home
REPORT_PATHS = (
    re.compile(r"^registry/[a-z][a-z0-9_]*/cards/[A-Za-z0-9_.-]+\.(html|md)$"),
    re.compile(r"^work/[a-z][a-z0-9_]*/gx/uncommitted/data_docs/local_site/[A-Za-z0-9_./%:+-]+\.html$"),
)


def is_report(relative: str) -> bool:
    return ".." not in relative.split("/") and any(p.match(relative) for p in REPORT_PATHS)


def local_report_url(path: str | Path, *, home: Path, reports_url: str) -> str | None:
    """The report server's URL of a local report file (a path or a file:// URL), or None when the
    file is not a report under the home."""
    text = str(path)
    if text.startswith("file://"):
        text = unquote(urlsplit(text).path)
    try:
        relative = Path(text).resolve().relative_to(home.resolve()).as_posix()
    except ValueError:
        return None
    return f"{reports_url.rstrip('/')}/{quote(relative)}" if is_report(relative) else None


def object_url(store: ObjectStore, key: str, *, home: Path, reports_url: str) -> str | None:
    """A browser link to a stored report: presigned in S3, the report server's URL for local files."""
    if isinstance(store, S3ObjectStore):
        return store.presigned_url(key, PRESIGNED_TTL_S)
    if isinstance(store, LocalObjectStore):
        return local_report_url(store.uri(key), home=home, reports_url=reports_url)
    return None


class ReportHandler(SimpleHTTPRequestHandler):
    """GET and HEAD of report files only; everything else under the home is a 404."""

    def send_head(self):
        relative = unquote(urlsplit(self.path).path).lstrip("/")
        if relative == HEALTH_PATH:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if relative.endswith("/") or relative == "":
            relative += "index.html"
        if not is_report(relative):
            self.send_error(404, "not a report")
            return None
        self.path = "/" + quote(relative)
        return super().send_head()

    def list_directory(self, path):
        self.send_error(404, "not a report")
        return None

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


def report_server(home: Path, host: str, port: int) -> ThreadingHTTPServer:
    """A read-only HTTP server of the reports under home; call serve_forever() on it."""
    return ThreadingHTTPServer((host, port), partial(ReportHandler, directory=str(home)))
