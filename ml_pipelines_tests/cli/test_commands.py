"""The commands themselves, without training: demo's pipeline selection (`--pipelines a b`),
land, serve's child process, audit, trace and registry errors, and the settings they run on."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import ml_pipelines.cli.demo as demo_module
from ml_pipelines.cli import main
from ml_pipelines.cli.serve import SERVICE, bentoml_command, serve_env
from ml_pipelines.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ["credit_default", "diabetes_progression", "wine_cultivar"]


@pytest.fixture
def homes(tmp_path, monkeypatch) -> Path:
    """ML_PIPELINES_HOME and DAGSTER_HOME under tmp_path, local environment."""
    monkeypatch.setenv("ML_PIPELINES_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.delenv("ML_PIPELINES_ENV", raising=False)
    return tmp_path


def cli(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "ML_PIPELINES_HOME": str(home), "ML_PIPELINES_ENV": "local"}
    return subprocess.run([sys.executable, "-m", "ml_pipelines.cli", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


# ---------------------------------------------------------------- demo


@pytest.fixture
def ran(monkeypatch) -> list[str]:
    """The pipelines demo runs, with each retrain job replaced by a no-op (no training)."""
    names: list[str] = []

    def run_pipeline(definitions, instance, registry, name, console):
        assert instance.is_persistent and Path(instance.root_directory) == Path(os.environ["DAGSTER_HOME"])
        names.append(name)
        # what Dagster and the libraries write goes to the log file; progress to the console
        os.write(2, f"noisy library output for {name}\n".encode())
        print(f"[{name}] raw_data        ok         0.0s", file=console)
        return name, True, 0.0, None

    monkeypatch.setattr(demo_module, "_run_pipeline", run_pipeline)
    return names


def ours(environ) -> dict[str, str]:
    return {k: v for k, v in environ.items() if k.startswith(("ML_PIPELINES", "DAGSTER", "BENTOML"))}


@pytest.mark.parametrize(
    ("args", "selected"),
    [
        # argparse's nargs='*': the names after the flag
        (["--pipelines", "wine_cultivar", "credit_default"], ["credit_default", "wine_cultivar"]),
        (["--pipelines", "wine_cultivar", "--pipelines", "diabetes_progression"],
         ["diabetes_progression", "wine_cultivar"]),
        ([], SHIPPED),
    ],
    ids=["names-after-the-flag", "repeated-flag", "all"],
)
def test_demo_runs_the_selected_pipelines(homes, ran, capsys, args, selected):
    environ = ours(os.environ)
    assert main(["demo", *args]) == 0
    assert ran == selected
    out = capsys.readouterr().out
    assert f"Dagster instance: {homes / 'dagster_home'} (SQLite)" in out
    assert [line for line in out.splitlines() if line.startswith("== ")] == [f"== {n}: ok in 0.0s" for n in selected]
    # the instance lives in DAGSTER_HOME with the repo's dagster.yaml; the environment is left as it was
    assert (homes / "dagster_home" / "dagster.yaml").read_text() == (REPO_ROOT / "dagster.yaml").read_text()
    assert ours(os.environ) == environ


def test_demo_prints_progress_and_summary_and_logs_the_rest_to_a_file_it_names(homes, ran, capfd):
    """The demo printed about 300 log lines per pipeline before its summary."""
    assert main(["demo", "--pipelines", "wine_cultivar", "credit_default"]) == 0
    out, err = capfd.readouterr()
    lines = out.splitlines()
    log_path = Path(lines[0].removeprefix("full log: "))
    assert log_path.parent == homes / "home" / "logs" and log_path.name.startswith("demo-")
    assert lines.count(f"full log: {log_path}") == 2  # named first, and again with the summary
    assert [line for line in lines if line.startswith("[")] == [
        "[credit_default] raw_data        ok         0.0s", "[wine_cultivar] raw_data        ok         0.0s"]
    assert "noisy library output" not in out + err
    log = log_path.read_text()
    assert "noisy library output for credit_default" in log and "noisy library output for wine_cultivar" in log


def test_demo_progress_names_the_stages_that_never_ran():
    """Dagster logs no step event for a step whose upstream failed; the demo says it did not run."""
    console = io.StringIO()
    progress = demo_module.StageProgress("loans", console)
    progress.ended.add("raw_data")
    progress.finish({"loans__raw_data", "loans__raw_data_matches_expectation_suite", "loans__validated_data"})
    assert console.getvalue().splitlines() == ["[loans] validated_data  not run"]


def test_demo_with_an_unknown_pipeline_exits_2(homes):
    done = cli("demo", "--pipelines", "nope", "credit_default", "zzz", home=homes / "home")
    assert done.returncode == 2, done.stderr
    assert f"unknown pipeline(s): nope, zzz; known: {', '.join(SHIPPED)}" in done.stdout


def test_demo_reports_a_failed_pipeline_with_exit_1(homes, monkeypatch, capsys):
    monkeypatch.setattr(demo_module, "_run_pipeline",
                        lambda d, i, r, name, console: (name, name != "wine_cultivar", 0.0, None))
    assert main(["demo", "--pipelines", "credit_default", "wine_cultivar"]) == 1
    assert "== wine_cultivar: FAILED" in capsys.readouterr().out


# ---------------------------------------------------------------- land


def test_land_writes_a_batch_under_the_home_without_touching_the_environment(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("ML_PIPELINES_HOME", raising=False)  # the default home, ./.ml_pipelines
    monkeypatch.delenv("ML_PIPELINES_ENV", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["land", "credit_default", "--rows", "40", "--seed", "3", "--drift", "0.5"]) == 0
    path = Path(capsys.readouterr().out.strip().removeprefix("landed "))
    assert path.parent == tmp_path / ".ml_pipelines" / "landing" / "credit_default"
    assert path.name.endswith("-drift0.5.csv")
    assert len(path.read_text().splitlines()) == 41 and "defaulted" not in path.read_text().splitlines()[0]
    assert "ML_PIPELINES_HOME" not in os.environ


def test_land_of_an_unknown_pipeline_exits_2(homes, capsys):
    assert main(["land", "nope"]) == 2
    assert "error: no pipeline 'nope' at" in capsys.readouterr().err


# ---------------------------------------------------------------- serve


def test_serve_execs_bentoml_with_the_settings_environment(homes, monkeypatch):
    monkeypatch.setenv("ML_PIPELINES_SERVE_VERSION", "")
    calls = []
    monkeypatch.setattr(os, "execvpe", lambda file, args, env: calls.append((file, args, env)))
    assert main(["serve", "credit_default", "--port", "3100", "--version", "v7", "--keep-alive", "9"]) == 0
    [(file, args, env)] = calls
    assert file == sys.executable
    assert args == [sys.executable, "-m", "bentoml", "serve", SERVICE,
                    "--host", "127.0.0.1", "--port", "3100", "--timeout-keep-alive", "9"]
    home = homes / "home"
    assert env["ML_PIPELINES_SERVE_PIPELINE"] == "credit_default" and env["ML_PIPELINES_SERVE_VERSION"] == "v7"
    assert env["ML_PIPELINES_HOME"] == str(home) and env["BENTOML_HOME"] == str(home / "bentoml")
    assert env["BENTOML_DO_NOT_TRACK"] == "True"
    assert env["PATH"] == os.environ["PATH"]  # the rest of the environment is inherited


def test_serve_env_keeps_a_bentoml_home_and_follows_the_champion_by_default(tmp_path):
    settings = Settings.from_env({"ML_PIPELINES_HOME": str(tmp_path), "BENTOML_HOME": "/srv/bentoml"})
    env = serve_env(settings, "wine_cultivar", None)
    assert env["BENTOML_HOME"] == "/srv/bentoml"
    assert "ML_PIPELINES_SERVE_VERSION" not in env
    assert bentoml_command("0.0.0.0", 3000, 75)[-6:] == ["--host", "0.0.0.0", "--port", "3000", "--timeout-keep-alive", "75"]


# ---------------------------------------------------------------- audit and trace


def _log(home: Path, pipeline: str, day: str, *records: dict) -> None:
    folder = home / "audit" / pipeline / day
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "host-1.jsonl").open("a") as handle:
        for r in records:
            handle.write(json.dumps(r) + "\n")


def _record(request_id: str, timestamp: str, **extra) -> dict:
    return {"request_id": request_id, "caller": None, "model_version": "v1", "timestamp": timestamp,
            "input": {"x": 1}, "output": {"prediction": 0}, **extra}


def test_audit_prints_one_line_per_prediction_oldest_first(homes, capsys):
    home = homes / "home"
    _log(home, "credit_default", "2026-01-02", _record("bbb", "2026-01-02T10:00:00+00:00", caller="app1"))
    _log(home, "credit_default", "2026-01-01", _record("aaa", "2026-01-01T09:00:00+00:00", index=1),
         _record("aaa", "2026-01-01T09:00:00+00:00", index=0))
    assert main(["audit", "credit_default"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        '2026-01-01T09:00:00+00:00 aaa#0 caller=- version=v1 input={"x": 1} output={"prediction": 0}',
        '2026-01-01T09:00:00+00:00 aaa#1 caller=- version=v1 input={"x": 1} output={"prediction": 0}',
        '2026-01-02T10:00:00+00:00 bbb#0 caller=app1 version=v1 input={"x": 1} output={"prediction": 0}',
    ]
    assert main(["audit", "credit_default", "--since", "2026-01-02", "--limit", "5"]) == 0
    assert [line.split()[1] for line in capsys.readouterr().out.splitlines()] == ["bbb#0"]
    assert main(["audit", "credit_default", "--limit", "1"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1
    assert main(["audit", "credit_default", "--since", "2027-01-01"]) == 0
    assert capsys.readouterr().out.strip() == "no predictions logged for credit_default since 2027-01-01"


def test_trace_of_an_unknown_request_exits_2(homes):
    done = cli("trace", "f" * 32, home=homes / "home")
    assert done.returncode == 2
    assert done.stdout.strip() == f"error: no prediction with request id {'f' * 32} in {homes / 'home' / 'audit'}"


# ---------------------------------------------------------------- registry


def test_registry_list_of_an_unknown_pipeline_says_so_and_exits_1(homes):
    done = cli("registry", "list", "no_such_pipeline", home=homes / "home")
    assert done.returncode == 1
    assert done.stdout.strip() == "no_such_pipeline: no versions"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "credit_default", "20260101-000000-abcdef"],
         "error: credit_default has no version '20260101-000000-abcdef'"),
        (["promote", "credit_default", "run-0123456789ab"], "error: credit_default has no version 'run-0123456789ab'"),
    ],
    ids=["show", "promote"],
)
def test_registry_errors_print_error_and_exit_2(homes, args, message):
    done = cli("registry", *args, home=homes / "home")
    assert done.returncode == 2, done.stderr
    assert done.stdout.strip() == message


def test_rollback_without_history_exits_2(homes, capsys):
    assert main(["registry", "rollback", "credit_default"]) == 2
    assert capsys.readouterr().out.startswith("error: ")


# ---------------------------------------------------------------- settings


def test_an_unusable_environment_variable_is_an_error_exit_2(homes, monkeypatch, capsys):
    monkeypatch.setenv("ML_PIPELINES_ENV", "staging")
    assert main(["audit", "credit_default"]) == 2
    assert "error: ML_PIPELINES_ENV='staging' is not one of local, prod" in capsys.readouterr().err


def test_the_cli_and_its_core_modules_never_touch_os_environ():
    package = REPO_ROOT / "ml_pipelines"
    files = [*(package / "cli").glob("*.py"),
             *(package / "core" / f for f in ("landing.py", "scaffold.py", "trace.py", "prediction_log.py"))]
    assert len(files) >= 12
    assert [str(f) for f in files if "os.environ" in f.read_text()] == []
