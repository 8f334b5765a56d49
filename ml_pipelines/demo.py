"""`ml-pipelines demo`: materialize every pipeline on the local Dagster instance and print a summary."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def ensure_local_instance() -> Path:
    """DAGSTER_HOME (default .dagster_home) holding the repo's dagster.yaml."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(PROJECT_ROOT / ".dagster_home"))).resolve()
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists() and (PROJECT_ROOT / "dagster.yaml").exists():
        shutil.copy(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    return home


def run_demo(only: list[str] | None = None) -> int:
    home = ensure_local_instance()
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
    from ml_pipelines.settings import Settings

    resources = platform_resources(Settings.from_env())
    registry = resources["registry"].registry()
    failed = []
    rows = []
    with dg.DagsterInstance.get() as instance:
        for name in names:
            started = time.perf_counter()
            result = definitions.resolve_job_def(f"{name}_retrain_job").execute_in_process(
                instance=instance, raise_on_error=False, tags={"ml_pipelines/trigger": "demo"}
            )
            seconds = time.perf_counter() - started
            if not result.success:
                failed.append(name)
                for event in result.all_events:
                    if event.is_step_failure:
                        print(f"[{name}] step {event.step_key} failed: {event.event_specific_data.error.message}")
                for evaluation in result.get_asset_check_evaluations():
                    if not evaluation.passed:
                        print(f"[{name}] check {evaluation.check_name} failed: {evaluation.description}")
            champion = registry.get_alias(name, "champion")
            record = registry.get_version(name, champion) if champion else None
            rows.append((name, result.success, seconds, record))
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
    return 1 if failed else 0
