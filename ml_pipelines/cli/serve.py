"""`ml-pipelines serve`: exec `bentoml serve` on the model service for one pipeline."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from ml_pipelines.settings import Settings

SERVICE = "ml_pipelines.serving.service:ModelService"


def bentoml_command(host: str, port: int, keep_alive: int) -> list[str]:
    # uvicorn closes a keep-alive connection after 5 s idle by default, the same as httpx's and many
    # clients' pool expiry: a request sent on a connection the server is closing fails with a
    # reset. Servers keep connections longer than their clients and load balancers (60 s) do.
    return [sys.executable, "-m", "bentoml", "serve", SERVICE,
            "--host", host, "--port", str(port), "--timeout-keep-alive", str(keep_alive)]


def serve_env(settings: Settings, pipeline: str, version: str | None) -> dict[str, str]:
    """The service's environment: ours, the pipeline (and pinned version), BentoML's store under the
    home, and the pid that `bentoml serve` will have (we exec it), so that its workers stop with it."""
    from ml_pipelines.core.layout import LocalLayout

    overrides = {
        "ML_PIPELINES_SERVE_PIPELINE": pipeline,
        "BENTOML_HOME": settings.environ.get("BENTOML_HOME", str(LocalLayout(settings.home).bentoml)),
        "ML_PIPELINES_SERVE_PARENT": str(os.getpid()),
    }
    if version:
        overrides["ML_PIPELINES_SERVE_VERSION"] = version
    return settings.child_env(**overrides)


def serve(
    pipeline: Annotated[str, typer.Argument(help="pipeline whose model to serve", show_default=False)],
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on (make dev has 3000)")] = 3001,
    version: Annotated[
        str | None, typer.Option(help="serve this version instead of following the champion", show_default=False)
    ] = None,
    keep_alive: Annotated[
        int, typer.Option("--keep-alive", metavar="SECONDS", help="close idle client connections after this long")
    ] = 75,
) -> None:
    env = serve_env(Settings.from_env(), pipeline, version)
    command = bentoml_command(host, port, keep_alive)
    os.execvpe(command[0], command, env)


def register(app: typer.Typer) -> None:
    app.command("serve", help="serve a pipeline's champion (or --version) with bentoml serve")(serve)
