"""What a run launched from the UI costs against the same run in process: credit_default
on a small CSV (a few hundred rows), launched the way the UI launches it, vs
execute_in_process of the same job, in the same run of this script. Target: <= 1.5x.

UI side: a real `dagster dev` (webserver + daemon) on a DAGSTER_HOME holding the repo's
dagster.yaml (QueuedRunCoordinator, the local run launcher) and a workspace whose
definitions are the spec plus the platform's own resources and executor
(ml_pipelines.defs.resources: the local default unless --executor says otherwise). The
run is submitted with Dagster's GraphQL client, as the Launchpad does; its time is the
instance's own, from the run's creation to its end (queue, run worker start, every step).

In-process side: the same spec and job through execute_in_process on a temp instance,
in this process, with the heavy libraries already imported (the step work alone).

Both sides read the same CSV, which gets new rows for every repeat (a new seed), and each
side has its own registry, so every run of either side trains, evaluates and packages a
new version. Sides alternate U P P U ... so that drift in load hits both alike. The spec
is the shipped credit_default one with its source replaced by the CSV, no monitoring, the
row-count rule and the gate's floor lowered to what a few hundred rows can meet, and
--models keeping only some of its candidates (all three by default: gbm, logreg, mlp).

    python -m bench.ui_launch [--rows 344] [--repeats 3] [--models gbm,logreg,mlp] [--executor ...]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import yaml

from bench._common import median, print_table, timed, write_results

REPO_ROOT = Path(__file__).resolve().parent.parent
SPEC_FILE = REPO_ROOT / "ml_pipelines" / "defs" / "pipelines" / "credit_default" / "defs.yaml"
PIPELINE = "credit_default"
JOB = f"{PIPELINE}_retrain_job"
TARGET_RATIO = 1.5
READY_TIMEOUT_S = 180
RUN_TIMEOUT_S = 1800
DEFS_FILE = "ui_launch_defs.py"

# The workspace `dagster dev` loads: the spec beside it, with the platform's resources and executor.
DEFS_SOURCE = '''\
"""Written by bench/ui_launch.py."""
import json
from pathlib import Path

import dagster as dg

from ml_pipelines.components import build_pipeline_defs
from ml_pipelines.definitions import apply_policies
from ml_pipelines.defs import resources as platform  # the module: one @dg.definitions per module scope
from ml_pipelines.spec import PipelineSpec


@dg.definitions
def defs() -> dg.Definitions:
    spec = PipelineSpec.model_validate(json.loads((Path(__file__).parent / "spec.json").read_text()))
    return dg.Definitions.merge(apply_policies(build_pipeline_defs(spec)), platform.resources())
'''


def bench_attributes(csv_path: Path, rows: int, models: list[str]) -> dict[str, Any]:
    attributes = yaml.safe_load(SPEC_FILE.read_text())["attributes"]
    attributes["source"] = {"kind": "csv", "path": str(csv_path)}
    attributes.pop("monitoring")
    attributes["schema"]["row_count"] = {"min": max(1, rows // 2)}
    attributes["evaluation"]["gate"]["min"] = 0.0  # a few hundred rows: every run reaches packaging
    attributes["selection"].pop("max_latency_ms", None)
    kept = [model for model in attributes["models"] if model["name"] in models]
    if not kept:
        raise SystemExit(f"--models {','.join(models)}: none of {[m['name'] for m in attributes['models']]}")
    attributes["models"] = kept
    return attributes


def write_rows(csv_path: Path, rows: int, seed: int) -> None:
    from ml_pipelines.datasets.credit import generate

    generate(rows=rows, seed=seed).drop(columns=["applied_on"]).to_csv(csv_path, index=False)


# ---------------------------------------------------------------- UI side


@contextlib.contextmanager
def dagster_dev(root: Path, attributes: dict[str, Any], executor: str) -> Iterator[tuple[Any, Any]]:
    """(GraphQL client, instance) of a `dagster dev` over a fresh DAGSTER_HOME; stopped on exit."""
    import dagster as dg
    import httpx
    from dagster_graphql import DagsterGraphQLClient

    from ml_pipelines_tests import servers

    workspace, dagster_home = root / "workspace", root / "dagster_home"
    for folder in (workspace, dagster_home):
        folder.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    (workspace / "spec.json").write_text(json.dumps(attributes))
    (workspace / DEFS_FILE).write_text(DEFS_SOURCE)
    env = {"DAGSTER_HOME": str(dagster_home), "ML_PIPELINES_HOME": str(root / "ui_home"), "ML_PIPELINES_ENV": "local"}
    if executor:
        env["ML_PIPELINES_EXECUTOR"] = executor
    port = servers.free_port()
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        instance.get_runs(limit=1)  # create the SQLite storage before the server opens it
        command = [servers.venv_executable("dagster"), "dev", "-f", DEFS_FILE, "-h", "127.0.0.1", "-p", str(port)]
        ready = f"http://127.0.0.1:{port}/server_info"
        with servers.running("dagster dev (ui_launch)", command, log_path=root / "dagster_dev.log", cwd=workspace,
                             env=env, ready=ready, ready_timeout=READY_TIMEOUT_S) as server:
            def graphql(query: str) -> dict[str, Any]:
                response = httpx.post(f"http://127.0.0.1:{port}/graphql", json={"query": query}, timeout=30,
                                      trust_env=False)
                return response.json()["data"]

            servers.wait_for_code_locations(graphql, server, time.monotonic() + READY_TIMEOUT_S)
            yield DagsterGraphQLClient("127.0.0.1", port_number=port), instance


def launch_like_the_ui(client: Any, instance: Any) -> dict[str, float]:
    """Submit the job through GraphQL and wait for its end: the run's times from its record."""
    import dagster as dg

    run_id = client.submit_job_execution(JOB)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while client.get_run_status(run_id) not in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE,
                                                 dg.DagsterRunStatus.CANCELED):
        if time.monotonic() > deadline:
            raise SystemExit(f"run {run_id} did not end within {RUN_TIMEOUT_S}s")
        time.sleep(0.5)
    record = instance.get_run_record_by_id(run_id)
    if record.dagster_run.status != dg.DagsterRunStatus.SUCCESS:
        raise SystemExit(f"the UI-launched run {run_id} ended {record.dagster_run.status.value}")
    created = record.create_timestamp.replace(tzinfo=record.create_timestamp.tzinfo or UTC).timestamp()
    return {"launch_to_end_s": record.end_time - created, "run_s": record.end_time - record.start_time,
            "queued_and_starting_s": record.start_time - created, **step_overheads(instance, run_id)}


def step_overheads(instance: Any, run_id: str) -> dict[str, float]:
    """Seconds the run's steps spent starting (worker start to STEP_START) and working (START to end)."""
    first_seen: dict[str, float] = {}
    started: dict[str, float] = {}
    ended: dict[str, float] = {}
    for entry in instance.all_logs(run_id):
        step, event = entry.step_key, entry.dagster_event
        if not step or event is None:
            continue
        if event.event_type_value == "STEP_WORKER_STARTING":
            first_seen[step] = entry.timestamp
        elif event.event_type_value == "STEP_START":
            started[step] = entry.timestamp
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE"):
            ended[step] = entry.timestamp
    return {"steps_starting_s": sum(started[s] - first_seen.get(s, started[s]) for s in started),
            "steps_working_s": sum(ended[s] - started[s] for s in ended if s in started),
            "step_s": {s.split("__")[-1]: round(ended[s] - started[s], 3) for s in ended if s in started}}


# ---------------------------------------------------------------- in-process side


def run_in_process(attributes: dict[str, Any], home: Path) -> float:
    import dagster as dg

    from ml_pipelines.components import build_pipeline_defs
    from ml_pipelines.definitions import apply_policies
    from ml_pipelines.resources import local_resources
    from ml_pipelines.spec import PipelineSpec

    defs = dg.Definitions.merge(apply_policies(build_pipeline_defs(PipelineSpec.model_validate(attributes))),
                                dg.Definitions(resources=local_resources(home)))
    job = defs.resolve_job_def(JOB)
    with tempfile.TemporaryDirectory() as instance_dir, dg.DagsterInstance.local_temp(instance_dir) as instance:
        result, wall, _ = timed(lambda: job.execute_in_process(instance=instance, raise_on_error=False))
    if not result.success:
        raise SystemExit(f"in process: {[e.message for e in result.all_events if e.is_failure]}")
    return wall


def warm_imports() -> None:
    import importlib

    from ml_pipelines.defs.resources import PRELOADED_MODULES

    for module in PRELOADED_MODULES:
        importlib.import_module(module)


# ---------------------------------------------------------------- main


def measure(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    csv_path = root / "credit.csv"
    attributes = bench_attributes(csv_path, args.rows, args.models.split(","))
    warm_imports()
    ui_runs: list[dict[str, float]] = []
    in_process: list[float] = []
    with dagster_dev(root, attributes, args.executor) as (client, instance):
        write_rows(csv_path, args.rows, seed=99)
        first_run = launch_like_the_ui(client, instance)  # also starts the launcher's warm process
        print(f"first UI run after dagster dev started: {first_run}", flush=True)
        for repeat in range(args.repeats):
            write_rows(csv_path, args.rows, seed=100 + repeat)
            sides = ("ui", "in_process") if repeat % 2 == 0 else ("in_process", "ui")
            for side in sides:
                if side == "ui":
                    ui_runs.append(launch_like_the_ui(client, instance))
                else:
                    in_process.append(run_in_process(attributes, root / f"in_process_home_{repeat}"))
                print(f"repeat {repeat + 1}/{args.repeats} {side}: "
                      f"{ui_runs[-1] if side == 'ui' else round(in_process[-1], 2)}", flush=True)
    ui = {key: median([run[key] for run in ui_runs]) for key in ui_runs[0] if key != "step_s"}
    return {"ui": ui, "ui_runs": ui_runs, "ui_first_run": first_run, "in_process_s": median(in_process), "in_process_runs": in_process,
            "ratio": ui["launch_to_end_s"] / median(in_process), "ratio_run_only": ui["run_s"] / median(in_process)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=344)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default="gbm,logreg,mlp", help="which of the shipped spec's candidates to keep")
    parser.add_argument("--executor", default="", help="ML_PIPELINES_EXECUTOR for dagster dev (default: the local one)")
    args = parser.parse_args()
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="ui_launch_") as tmp:
        figures = measure(args, Path(tmp))
    ui = figures["ui"]
    print_table(
        f"UI-launched run vs in process: credit_default, {args.rows} rows, models {args.models}"
        f" (median of {args.repeats})",
        ["side", "seconds"],
        [["UI: first run after start (not in the median)", figures["ui_first_run"]["launch_to_end_s"]],
         ["UI: launch to end", ui["launch_to_end_s"]], ["UI: queued and starting", ui["queued_and_starting_s"]],
         ["UI: run (start to end)", ui["run_s"]], ["UI: steps starting (sum)", ui["steps_starting_s"]],
         ["UI: steps working (sum)", ui["steps_working_s"]], ["in process", figures["in_process_s"]],
         ["ratio (launch to end / in process)", figures["ratio"]]],
    )
    verdict = "meets" if figures["ratio"] <= TARGET_RATIO else "misses"
    print(f"\n{figures['ratio']:.2f}x: {verdict} the target of <= {TARGET_RATIO}x"
          f" (load average at start {load_at_start})")
    write_results("ui_launch", {
        "rows": args.rows, "repeats": args.repeats, "models": args.models.split(","),
        "executor": args.executor or "the local default (in_process, in a run worker forked warm by LocalRunLauncher)",
        "target_ratio": TARGET_RATIO, "load_average_at_start": load_at_start, **figures,
    })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
