"""`ml-pipelines demo`: materialize every pipeline on the local Dagster instance and print a summary."""

from __future__ import annotations

import io
import os
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Annotated

import typer

from ml_pipelines.cli._common import PROJECT_ROOT, exit_with
from ml_pipelines.settings import Settings

STAGES = ("raw_data", "validated_data", "features", "trained_model", "evaluation", "model_package")


def local_instance_home(settings: Settings) -> Path:
    """DAGSTER_HOME (default .dagster_home), holding the repo's dagster.yaml."""
    home = (settings.dagster_home or PROJECT_ROOT / ".dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists() and (PROJECT_ROOT / "dagster.yaml").exists():
        shutil.copy(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    return home


class StageProgress:
    """An event listener that prints one line per stage of a run when its step ends."""

    def __init__(self, name: str, console: IO[str]):
        self.name, self.console = name, console
        self.started: dict[str, float] = {}
        self.ended: set[str] = set()

    def __call__(self, entry) -> None:  # a dagster EventLogEntry, as the instance stores it
        event = entry.dagster_event
        stage = event and next((s for s in STAGES if event.step_key == f"{self.name}__{s}"), None)
        if stage is None:
            return
        kind = event.event_type_value
        if kind == "STEP_START":
            self.started[stage] = entry.timestamp
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE", "STEP_SKIPPED"):
            status = {"STEP_SUCCESS": "ok", "STEP_FAILURE": "FAILED", "STEP_SKIPPED": "skipped"}[kind]
            seconds = entry.timestamp - self.started.get(stage, entry.timestamp)
            self.ended.add(stage)
            print(f"[{self.name}] {stage:<15} {status:<8} {seconds:5.1f}s", file=self.console, flush=True)

    def finish(self, planned: set[str]) -> None:
        """A line for each planned stage that never ran (Dagster logs no step event for those
        whose upstream failed)."""
        for stage in STAGES:
            if f"{self.name}__{stage}" in planned and stage not in self.ended:
                print(f"[{self.name}] {stage:<15} not run", file=self.console, flush=True)


def _run_pipeline(definitions, instance, registry, name: str, console: IO[str]) -> tuple:
    """Run one retrain job, a line per stage; print what failed. A summary row: name, success, seconds, record."""
    started = time.perf_counter()
    run_id = str(uuid.uuid4())
    progress = StageProgress(name, console)
    instance.add_event_listener(run_id, progress)
    job = definitions.resolve_job_def(f"{name}_retrain_job")
    result = job.execute_in_process(
        instance=instance, raise_on_error=False, tags={"ml_pipelines/trigger": "demo"}, run_id=run_id
    )
    seconds = time.perf_counter() - started
    progress.finish({node.name for node in job.graph.nodes})
    if not result.success:
        for event in result.all_events:
            if event.is_step_failure:
                print(f"[{name}] step {event.step_key} failed: {event.event_specific_data.error.message}",
                      file=console)
        for evaluation in result.get_asset_check_evaluations():
            if not evaluation.passed:
                print(f"[{name}] check {evaluation.check_name} failed: {evaluation.description}", file=console)
    champion = registry.get_alias(name, "champion")
    record = registry.get_version(name, champion) if champion else None
    return name, result.success, seconds, record


@contextmanager
def output_to(log_path: Path) -> Iterator[IO[str]]:
    """Send everything this process and its children write to stdout and stderr (Dagster's event
    log lines, the libraries' warnings and progress bars) to log_path; yield the console."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        console = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    except (AttributeError, io.UnsupportedOperation):  # stdout is not a file (captured)
        console = sys.stdout
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    with open(log_path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield console
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            if console is not sys.stdout:
                console.flush()


def _print_summary(home: Path, resources: dict, rows: list[tuple], log_path: Path) -> None:
    print()
    print(f"Dagster instance: {home} (SQLite)   registry: {resources['registry'].root}")
    print(f"full log: {log_path}")
    for name, success, seconds, record in rows:
        status = "ok" if success else "FAILED"
        print(f"\n== {name}: {status} in {seconds:.1f}s")
        if record is None:
            print("   no champion version")
            continue
        metrics = ", ".join(f"{k}={v:.4f}" for k, v in record.metrics.items())
        print(f"   model:    {record.model_name} ({record.framework}) {record.params or ''}")
        print(f"   metrics:  {metrics}")
        print(f"   version:  {record.version} (champion), data {record.data_version}, spec {record.spec_hash}")
        bento_path = Path(resources["bento_store"].home) / "models" / name / record.version
        print(f"   bentoml:  {name}:{record.version} at {bento_path}")


def run_demo(settings: Settings, only: list[str] | None = None) -> int:
    """Every demo pipeline's retrain job (or only these), in process; 1 if any failed, 2 for an unknown name.
    The console gets a line per stage and the summary; everything else goes to a log file it names."""
    home = local_instance_home(settings)
    log_path = settings.home / "logs" / f"demo-{time.strftime('%Y%m%d-%H%M%S')}.log"
    print(f"full log: {log_path}", flush=True)
    with output_to(log_path) as console:
        import dagster as dg

        from ml_pipelines.definitions import defs
        from ml_pipelines.defs.resources import platform_resources

        definitions = defs()
        names = sorted(j.name.removesuffix("_retrain_job") for j in definitions.jobs if j.name.endswith("_retrain_job"))
        unknown = sorted(set(only or []) - set(names))
        if unknown:
            print(f"unknown pipeline(s): {', '.join(unknown)}; known: {', '.join(names)}", file=console)
            return 2
        names = [n for n in names if n in only] if only else names
        resources = platform_resources(settings)
        registry = resources["registry"].registry()
        with dg.DagsterInstance.from_config(str(home)) as instance:
            rows = [_run_pipeline(definitions, instance, registry, name, console) for name in names]
    _print_summary(home, resources, rows, log_path)
    return 0 if all(success for _, success, _, _ in rows) else 1


def demo(
    pipelines: Annotated[
        list[str] | None,
        typer.Option("--pipelines", metavar="NAME", show_default=False,
                     help="only these pipelines (default: all); repeat it, or list names after it: --pipelines a b"),
    ] = None,
    more: Annotated[
        list[str] | None,
        typer.Argument(metavar="NAME", show_default=False, help="more pipelines, as in `--pipelines a b`"),
    ] = None,
) -> None:
    exit_with(run_demo(Settings.from_env(), [*(pipelines or []), *(more or [])]))


def register(app: typer.Typer) -> None:
    app.command("demo", help="materialize every demo pipeline end to end and print a summary")(demo)
