"""`ml-pipelines` as users start it (`python -m ml_pipelines.cli`, the same `main` as the
console script): every command and group answers --help with its options and a one-line
description, and shell completion works through click's `_ML_PIPELINES_COMPLETE` protocol."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ml_pipelines.cli import app, main

REPO_ROOT = Path(__file__).resolve().parents[2]

# command path -> (words its one-line description holds, every flag and argument its help lists;
# arguments as click prints them, upper case)
COMMANDS: dict[str, tuple[str, list[str]]] = {
    "": ("Declarative ML pipelines", ["--install-completion", "--show-completion", "--help",
                                      "demo", "init", "land", "serve", "reports", "audit", "trace",
                                      "registry", "reproduce", "diff", "status", "usage", "experiments"]),
    "demo": ("materialize every demo pipeline", ["--pipelines", "NAME"]),
    "init": ("write a starter spec", ["NAME", "--from", "--target", "--task", "--out", "--force",
                                      "auto|classification|regression"]),
    "land": ("write a production batch", ["NAME", "--drift", "--rows", "--seed", "[default: 2000]"]),
    "serve": ("serve a pipeline's champion", ["PIPELINE", "--host", "--port", "--version", "--keep-alive",
                                              "[default: 127.0.0.1]", "[default: 3001]", "[default: 75]"]),
    "reports": ("serve model cards and Data Docs over HTTP", ["--port", "--host", "[default: 127.0.0.1]"]),
    "audit": ("print the audit trail", ["PIPELINE", "--since", "--limit"]),
    "trace": ("trace a prediction back", ["REQUEST_ID"]),
    "reproduce": ("rebuild a version from its stored data and spec", ["PIPELINE", "VERSION", "--tolerance",
                                                                       "--format", "[text|json]"]),
    "diff": ("what changed between two versions", ["PIPELINE", "V1", "V2", "--format", "[text|json]"]),
    "registry": ("inspect and move model versions", ["list", "show", "promote", "rollback", "history", "gc"]),
    "registry list": ("versions, aliases, metrics", ["PIPELINE"]),
    "registry show": ("one version with its lineage", ["PIPELINE", "VERSION"]),
    "registry promote": ("make a version the champion", ["PIPELINE", "VERSION", "--reason", "--alias",
                                                         "champion|challenger"]),
    "registry rollback": ("move the champion back", ["PIPELINE"]),
    "registry history": ("every alias move, oldest first", ["PIPELINE", "--alias", "--json", "champion|challenger"]),
    "registry gc": ("remove old versions' snapshots and artifacts", ["PIPELINE", "--dry-run", "--keep",
                                                                    "--grace-hours", "--format"]),
    "status": ("is every pipeline healthy", ["PIPELINES", "--json"]),
    "usage": ("CPU-hours, GPU-hours and peak memory", ["--since", "--by", "--json", "pipeline|owner|stage",
                                                      "[default: 7d]"]),
}


def cli(*args: str, env: dict[str, str] | None = None, via_bash: bool = False) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "ml_pipelines.cli", *args]
    if via_bash:  # bash stays the parent process, so typer's shell detection finds it
        command = ["bash", "-c", f'{" ".join(command)}; status=$?; exit "$status"']
    return subprocess.run(command, cwd=REPO_ROOT, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("path", list(COMMANDS), ids=lambda p: p or "ml-pipelines")
def test_every_command_answers_help(path: str):
    description, flags = COMMANDS[path]
    done = cli(*path.split(), "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"Usage: ml-pipelines {path}".rstrip() + " [OPTIONS]"), done.stdout
    assert description in done.stdout
    for flag in [*flags, "-h, --help"]:
        assert flag in done.stdout, (flag, done.stdout)


def test_arguments_are_listed_with_their_help():
    """typer 0.25 (pinned for `dg --help`) on click 8.5 listed arguments without their help."""
    assert "PIPELINE  pipeline whose model to serve  [required]" in cli("serve", "--help").stdout
    assert "REQUEST_ID  the request_id a prediction response carried" in cli("trace", "--help").stdout


@pytest.mark.parametrize("path", list(COMMANDS), ids=lambda p: p or "ml-pipelines")
def test_short_help_in_process(path: str):
    """-h is --help, as with argparse; `main` returns 0 after printing it."""
    result = CliRunner().invoke(app, [*path.split(), "-h"], prog_name="ml-pipelines")
    assert result.exit_code == 0, result.output
    assert COMMANDS[path][0] in result.output
    assert main([*path.split(), "-h"]) == 0


@pytest.mark.parametrize("args", [[], ["registry"]], ids=["no-command", "no-verb"])
def test_a_missing_command_prints_the_usage_and_exits_2(args: list[str]):
    done = cli(*args)
    assert done.returncode == 2
    assert "Usage: ml-pipelines" in done.stdout + done.stderr


def test_a_usage_error_exits_2():
    done = cli("registry", "promote", "credit_default", "v1", "--alias", "production")
    assert done.returncode == 2
    assert "--alias" in done.stderr
    assert main(["serve"]) == 2  # the pipeline argument is missing


def test_show_completion_prints_a_bash_script():
    done = cli("--show-completion", env={"SHELL": "/bin/bash"}, via_bash=True)
    assert done.returncode == 0, done.stderr
    assert "_ML_PIPELINES_COMPLETE=complete_bash" in done.stdout
    assert "complete -o default -F _ml_pipelines_completion ml-pipelines" in done.stdout


def test_the_completion_protocol_prints_the_script_too():
    done = cli(env={"_ML_PIPELINES_COMPLETE": "source_bash"})
    assert done.returncode == 0, done.stderr
    assert "complete -o default -F _ml_pipelines_completion ml-pipelines" in done.stdout


def test_install_completion_writes_the_script_for_bash(tmp_path):
    done = cli("--install-completion", env={"HOME": str(tmp_path), "SHELL": "/bin/bash"}, via_bash=True)
    assert done.returncode == 0, done.stderr
    script = tmp_path / ".bash_completions" / "ml-pipelines.sh"
    assert "_ML_PIPELINES_COMPLETE=complete_bash" in script.read_text()
    assert f"source '{script}'" in (tmp_path / ".bashrc").read_text()


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ("ml-pipelines reg", ["registry"]),
        ("ml-pipelines registry pro", ["promote"]),
        ("ml-pipelines registry r", ["rollback"]),
        ("ml-pipelines init loans --ta", ["--target", "--task"]),
        ("ml-pipelines registry promote credit_default v1 --alias ", ["champion", "challenger"]),
    ],
)
def test_bash_completes_commands_options_and_choices(words: str, expected: list[str]):
    cword = len(words.split()) - (0 if words.endswith(" ") else 1)
    done = cli(env={"_ML_PIPELINES_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(cword)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == expected
