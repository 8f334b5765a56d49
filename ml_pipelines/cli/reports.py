"""`ml-pipelines reports`: serve the model cards and Data Docs under the platform home over
HTTP (read-only), so the links in the Dagster UI open in a browser. `make dev` starts it."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

import typer

from ml_pipelines.settings import Settings


def reports(
    port: Annotated[
        int | None, typer.Option(help="port to listen on (default: the port of ML_PIPELINES_REPORTS_URL)",
                                 show_default=False)
    ] = None,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
) -> None:
    from ml_pipelines.core.reports import report_server

    settings = Settings.from_env()
    port = port or urlsplit(settings.reports_url).port or 80
    server = report_server(settings.home, host, port)
    print(f"serving model cards and Data Docs under {settings.home} at http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def register(app: typer.Typer) -> None:
    app.command("reports", help="serve model cards and Data Docs over HTTP (read-only) for the UI's links")(reports)
