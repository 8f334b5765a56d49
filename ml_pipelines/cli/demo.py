"""`ml-pipelines demo`: materialize every pipeline on the local Dagster instance and print a summary."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Annotated

import typer

from ml_pipelines.cli._common import PROJECT_ROOT, exit_with
from ml_pipelines.settings import Settings


def local_instance_home(settings: Settings) -> Path:
    """DAGSTER_HOME (default .dagster_home), holding the repo's dagster.yaml."""
    home = (settings.dagster_home or PROJECT_ROOT / ".dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists() and (PROJECT_ROOT / "dagster.yaml").exists():
        shutil.copy(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    return home


def _run_pipeline(definitions, instance, registry, name: str) -> tuple:
    """Run one retrain job; print what failed. A summary row: name, success, seconds, champion record."""
    started = time.perf_counter()
    result = definitions.resolve_job_def(f"{name}_retrain_job").execute_in_process(
        instance=instance, raise_on_error=False, tags={"ml_pipelines/trigger": "demo"}
    )
    seconds = time.perf_counter() - started
    if not result.success:
        for event in result.all_events:
            if event.is_step_failure:
                print(f"[{name}] step {event.step_key} failed: {event.event_specific_data.error.message}")
        for evaluation in result.get_asset_check_evaluations():
            if not evaluation.passed:
                print(f"[{name}] check {evaluation.check_name} failed: {evaluation.description}")
    champion = registry.get_alias(name, "champion")
    record = registry.get_version(name, champion) if champion else None
    return name, result.success, seconds, record


def _print_summary(home: Path, resources: dict, rows: list[tuple]) -> None:
    print()
    print(f"Dagster instance: {home} (SQLite)   registry: {resources['registry'].root}")
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
    """Every demo pipeline's retrain job (or only these), in process; 1 if any failed, 2 for an unknown name."""
    home = local_instance_home(settings)
    import dagster as dg

    from ml_pipelines.definitions import defs
    from ml_pipelines.defs.resources import platform_resources

    definitions = defs()
    jobs = sorted(j.name for j in definitions.jobs if j.name.endswith("_retrain_job"))
    names = [j.removesuffix("_retrain_job") for j in jobs]
    if only:
        unknown = sorted(set(only) - set(names))
        if unknown:
            print(f"unknown pipeline(s): {', '.join(unknown)}; known: {', '.join(names)}")
            return 2
        names = [n for n in names if n in only]
    resources = platform_resources(settings)
    registry = resources["registry"].registry()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        rows = [_run_pipeline(definitions, instance, registry, name) for name in names]
    _print_summary(home, resources, rows)
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
