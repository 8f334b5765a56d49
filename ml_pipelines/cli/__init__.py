"""The `ml-pipelines` command line: one typer app; each module here registers one command group."""

from __future__ import annotations

import sys

import typer

from ml_pipelines.cli import audit, demo, experiments, init, land, registry, reports, serve, status, trace, usage, versions
from ml_pipelines.settings import SettingsError

PROG_NAME = "ml-pipelines"

app = typer.Typer(
    name=PROG_NAME,
    help="Declarative ML pipelines on Dagster: demo, scaffold, land, serve, audit, trace, the model registry, "
    "reproducing and comparing versions, the experiment history, platform status and usage.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,  # plain help, as argparse printed it; [a-z] in a help text stays as written
    pretty_exceptions_enable=False,
)
for _group in (demo, init, land, serve, reports, audit, trace, registry, versions, status, usage, experiments):
    _group.register(app)


def main(argv: list[str] | None = None) -> int:
    """Run one command and return its exit status (2: a usage or user error, printed as `error: ...`)."""
    try:
        app(args=argv, prog_name=PROG_NAME)
    except SystemExit as exc:  # typer ends every command, --help and completion with SystemExit
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except SettingsError as exc:  # an environment variable the platform cannot use
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
