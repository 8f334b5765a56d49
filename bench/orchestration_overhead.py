"""What Dagster costs on top of the work: the credit_default chain through Dagster
in process vs the same ml_pipelines.core calls from a plain script.

Both sides use the real spec (ml_pipelines/defs/pipelines/credit_default/defs.yaml)
with the generator's `rows` overridden (100k by default), in the same process,
each on a fresh registry (no champion), alternating D P P D ... so that drift in
machine load hits both sides alike. Reported: the median wall and CPU time per
side, and Dagster / plain. Target: <= 1.25x.

Dagster side: build_pipeline_defs(spec) + local resources in a temp dir, its
`credit_default_retrain_job` via execute_in_process on a temp SQLite instance
(the default filesystem IO manager pickles every asset output between steps).

Plain side: load_source -> spec_schema -> run_suite -> keep_valid_rows ->
build_feature_set -> select_model -> evaluate (+ plots) -> gate_for ->
package_version (the same function the model_package asset calls: artifacts,
profile, registry version, BentoML model, bento, promotion, card), with the
arguments the assets pass (Data Docs included, as the asset check writes them).
Both sides must end with the same data hash, metrics, artifact list and record
fields, or the benchmark fails.

Native thread pools (OpenMP, BLAS, torch) are limited to --threads (default 1)
on both sides: on a small shared machine, OpenMP spin-waits under other load
otherwise swamp the difference being measured. --threads 0 keeps library defaults.

    python -m bench.orchestration_overhead [--rows 100000] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from bench._common import median, print_table, timed, write_results

SPEC_FILE = Path(__file__).resolve().parent.parent / "ml_pipelines" / "defs" / "pipelines" / "credit_default" / "defs.yaml"
TARGET_RATIO = 1.25


def load_spec(rows: int):
    from ml_pipelines.spec import PipelineSpec

    attributes = yaml.safe_load(SPEC_FILE.read_text())["attributes"]
    attributes["source"].setdefault("params", {})["rows"] = rows
    return PipelineSpec.model_validate(attributes)


# ---------------------------------------------------------------- plain script


def run_plain(spec, root: Path) -> dict[str, Any]:
    """The chain as a plain script; the outcome carries its wall and CPU seconds."""
    outcome, wall, cpu = timed(lambda: plain_chain(spec, root))
    return {**outcome, "wall_s": wall, "cpu_s": cpu}


class Stopwatch:
    """Seconds per stage: each lap ends one stage and starts the next."""

    def __init__(self) -> None:
        self.stages: dict[str, float] = {}
        self._clock = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.stages[stage] = now - self._clock
        self._clock = now


def plain_chain(spec, root: Path) -> dict[str, Any]:
    """The credit_default chain as a plain script over ml_pipelines.core."""
    from ml_pipelines.core.evaluation import evaluate_for_spec
    from ml_pipelines.core.features import build_feature_set, check_required_columns
    from ml_pipelines.core.gate import gate_for
    from ml_pipelines.core.hashing import frame_hash
    from ml_pipelines.core.packaging import package_version
    from ml_pipelines.core.plots import evaluation_plots
    from ml_pipelines.core.records import Trigger
    from ml_pipelines.core.registry import ModelRegistry
    from ml_pipelines.core.selection import select_for_spec
    from ml_pipelines.core.sources import coerce_declared_types, load_source
    from ml_pipelines.core.storage import LocalObjectStore
    from ml_pipelines.core.validation import keep_valid_rows, run_suite, spec_schema
    from ml_pipelines.settings import Settings

    stopwatch = Stopwatch()
    lap, stages = stopwatch.lap, stopwatch.stages
    name = spec.name
    settings = Settings.from_env()
    registry = ModelRegistry(LocalObjectStore(root / "registry"))

    loaded = load_source(spec.source, base_dir=None, env=settings.variables)
    frame = coerce_declared_types(loaded.frame, spec.data_schema, loaded.description)
    check_required_columns(frame, spec, loaded.description)
    raw_hash = frame_hash(frame)
    lap("raw_data")

    schema = spec_schema(spec, frame, reference=None)
    project_dir = root / "work" / name
    project_dir.mkdir(parents=True, exist_ok=True)
    report = run_suite(frame, schema, suite_name=f"{name}_raw_data", project_dir=project_dir, run_name="plain")
    if not report.success:
        raise RuntimeError(f"plain: the suite failed: {report.summary_lines()}")
    lap("raw_data_matches_expectation_suite")

    validated, _ = keep_valid_rows(frame, schema, block=spec.data_schema.on_failure == "block", pipeline=name)
    lap("validated_data")

    features = build_feature_set(spec, validated.frame).with_lineage(
        data_version=frame_hash(validated.frame), schema=schema, partitions=()
    )
    lap("features")

    selection = select_for_spec(spec, features)
    lap("trained_model")

    evaluation = evaluate_for_spec(spec, selection.model, features, champion=None)
    evaluation.plots = evaluation_plots(evaluation, spec.task, spec.gate_metric)
    plot_dir = root / "work" / name / "evaluation" / "plain"
    plot_dir.mkdir(parents=True, exist_ok=True)
    for plot, png in evaluation.plots.items():
        (plot_dir / f"{plot}.png").write_bytes(png)
    lap("evaluation")

    decision = gate_for(spec, evaluation)
    if not decision.passed:
        raise RuntimeError(f"plain: the gate failed: {decision.explain()}")
    lap("evaluation_beats_champion")

    packaged = package_version(
        spec, selection, evaluation, features,
        registry=registry, bentoml_home=root / "bentoml", trigger=Trigger(None, "bench"),
        child_env=settings.child_env(),
    )
    lap("model_package")
    record = packaged.record
    return {
        "raw_data_hash": raw_hash,
        "data_version": features.data_version,
        "selected": selection.best.label,
        "metrics": evaluation.metrics,
        "artifacts": sorted(record.artifacts),
        "extra": sorted(record.extra),
        "stages": stages,
    }


# ---------------------------------------------------------------- through Dagster


def run_dagster(spec, root: Path) -> dict[str, Any]:
    """The same chain as the retrain job, executed in process on a temp SQLite instance."""
    import dagster as dg

    from ml_pipelines.components import build_pipeline_defs
    from ml_pipelines.core.registry import ModelRegistry
    from ml_pipelines.core.storage import LocalObjectStore
    from ml_pipelines.resources import local_resources

    home = root / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    # creating a SQLite instance (schema, migrations) is paid once per instance, not per
    # run, so it is timed apart from the run
    instance, setup_s, setup_cpu_s = timed(lambda: dg.DagsterInstance.local_temp(tempdir=str(home)))
    with instance:

        def execute():
            defs = dg.Definitions.merge(build_pipeline_defs(spec), dg.Definitions(resources=local_resources(root)))
            return defs.resolve_job_def(f"{spec.name}_retrain_job").execute_in_process(
                instance=instance,
                raise_on_error=True,
                # events still go to the instance's event log; only the console echo is quieted
                run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            )

        result, wall, cpu = timed(execute)
        steps = _step_seconds(instance, result.run_id)
        raw = next(
            e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == "raw_data"
        ).materialization.metadata["data_hash"].value
        # materializations that carry the step usage sampler's figures (bench.sampler_overhead)
        measured = sum("usage/wall_s" in e.materialization.metadata for e in result.get_asset_materialization_events())
    registry = ModelRegistry(LocalObjectStore(root / "registry"))
    record = registry.get_version(spec.name, registry.get_alias(spec.name, "champion"))
    return {
        "raw_data_hash": raw,
        "data_version": record.data_version,
        "selected": record.model_name,
        "metrics": record.metrics,
        "artifacts": sorted(record.artifacts),
        "extra": sorted(record.extra),
        "stages": steps,
        "wall_s": wall,
        "cpu_s": cpu,
        "instance_setup_s": setup_s,
        "instance_setup_cpu_s": setup_cpu_s,
        "measured_steps": measured,
    }


def _step_seconds(instance, run_id: str) -> dict[str, float]:
    """Wall seconds per step (start -> success), from the run's event log."""
    started: dict[str, float] = {}
    seconds: dict[str, float] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        step = event.step_key.split("__", 1)[-1]
        if event.event_type_value == "STEP_START":
            started[step] = entry.timestamp
        elif event.event_type_value == "STEP_SUCCESS":
            seconds[step] = entry.timestamp - started[step]
    return seconds


# ---------------------------------------------------------------- the benchmark


def warm_up(rows: int = 5000) -> None:
    """One untimed small run per side: imports, first GX context, thread pools and
    caches are paid before any timed run."""
    spec = load_spec(rows)
    for fn in (run_dagster, run_plain):
        root = Path(tempfile.mkdtemp(prefix="bench-warmup-"))
        try:
            fn(spec, root)
        finally:
            shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3, help="runs per side (at least 2)")
    parser.add_argument("--threads", type=int, default=1, help="native threads per pool; 0 = library defaults")
    args = parser.parse_args(argv)
    if args.repeats < 2:
        parser.error("--repeats must be at least 2")
    with thread_limit(args.threads):
        return _measure(args)


@contextmanager
def thread_limit(threads: int) -> Iterator[None]:
    if threads <= 0:
        yield
        return
    import torch
    from threadpoolctl import threadpool_limits

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        torch.set_num_threads(previous)


def _run_sides(spec, rows: int, repeats: int) -> tuple[list[str], dict[str, list[dict[str, Any]]]]:
    """Each side `repeats` times in ABBA order (D P P D D P ...), so adjacent runs share the load."""
    order = [("dagster", "plain")[(i + (i // 2)) % 2] for i in range(2 * repeats)]
    runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    print(f"orchestration overhead: credit_default, {rows:,} rows, {repeats} runs per side ({' '.join(order)})")
    for side in order:
        root = Path(tempfile.mkdtemp(prefix=f"bench-{side}-"))
        try:
            outcome = (run_dagster if side == "dagster" else run_plain)(spec, root)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        wall, cpu = outcome["wall_s"], outcome["cpu_s"]
        runs[side].append(outcome)
        outcome["load_average"] = round(os.getloadavg()[0], 2)
        print(f"  {side:7s} wall {wall:7.2f}s  cpu {cpu:7.2f}s  selected {outcome['selected']}  load {outcome['load_average']}")
    return order, runs


def _require_same_work(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Both sides did the same work: same data, same winner, same metrics; the plain reference."""
    reference = runs["plain"][0]
    for side, outcomes in runs.items():
        for outcome in outcomes:
            for field in ("raw_data_hash", "data_version", "metrics", "artifacts", "extra"):
                if outcome[field] != reference[field]:
                    raise AssertionError(f"{side} {field} {outcome[field]} != plain {reference[field]}")
            if not reference["selected"].startswith(outcome["selected"]):
                raise AssertionError(f"{side} selected {outcome['selected']}, plain {reference['selected']}")
    return reference


def _payload(spec, args: argparse.Namespace, order: list[str], runs: dict[str, list[dict[str, Any]]],
             reference: dict[str, Any], load_before: float) -> dict[str, Any]:
    summary = {side: {k: median([o[k] for o in runs[side]]) for k in ("wall_s", "cpu_s")} for side in runs}
    # adjacent runs (D P | P D | D P ...) share the machine's load of the moment
    paired = [
        runs["dagster"][i]["wall_s"] / runs["plain"][i]["wall_s"] for i in range(args.repeats)
    ]
    wall_ratio = summary["dagster"]["wall_s"] / summary["plain"]["wall_s"]
    cpu_ratio = summary["dagster"]["cpu_s"] / summary["plain"]["cpu_s"]
    stage_names = list(dict.fromkeys([*runs["plain"][0]["stages"], *runs["dagster"][0]["stages"]]))
    stages = {
        stage: {
            "plain_s": median([o["stages"].get(stage, 0.0) for o in runs["plain"]]),
            "dagster_step_s": median([o["stages"].get(stage, 0.0) for o in runs["dagster"]]),
        }
        for stage in stage_names
    }
    step_total = median([sum(o["stages"].values()) for o in runs["dagster"]])
    return {
        "pipeline": spec.name,
        "rows": args.rows,
        "repeats": args.repeats,
        "threads": args.threads or "library defaults",
        "order": order,
        "load_average_before": load_before,
        "selected_model": reference["selected"],
        "metrics": reference["metrics"],
        "plain": {
            **summary["plain"],
            "runs_wall_s": [o["wall_s"] for o in runs["plain"]],
            "runs_cpu_s": [o["cpu_s"] for o in runs["plain"]],
            "runs_load_average": [o["load_average"] for o in runs["plain"]],
        },
        "dagster": {
            **summary["dagster"],
            "runs_wall_s": [o["wall_s"] for o in runs["dagster"]],
            "runs_cpu_s": [o["cpu_s"] for o in runs["dagster"]],
            "runs_load_average": [o["load_average"] for o in runs["dagster"]],
            "sum_of_steps_s": step_total,
            "outside_steps_s": summary["dagster"]["wall_s"] - step_total,
            "instance_setup_s": median([o["instance_setup_s"] for o in runs["dagster"]]),
            "instance_setup_cpu_s": median([o["instance_setup_cpu_s"] for o in runs["dagster"]]),
        },
        "overhead_wall_s": summary["dagster"]["wall_s"] - summary["plain"]["wall_s"],
        "overhead_cpu_s": summary["dagster"]["cpu_s"] - summary["plain"]["cpu_s"],
        "ratio_wall": wall_ratio,
        "ratio_cpu": cpu_ratio,
        "ratio_wall_paired": {"median": median(paired), "pairs": paired},
        "target_ratio": TARGET_RATIO,
        "within_target": wall_ratio <= TARGET_RATIO,
        "stages": stages,
    }


def _print_summary(payload: dict[str, Any], path) -> None:
    summary = {side: {k: payload[side][k] for k in ("wall_s", "cpu_s")} for side in ("plain", "dagster")}
    stages, wall_ratio, cpu_ratio = payload["stages"], payload["ratio_wall"], payload["ratio_cpu"]
    paired, load_before = payload["ratio_wall_paired"]["pairs"], payload["load_average_before"]
    print_table(
        "per stage (median seconds; a Dagster step includes loading its inputs and storing its output)",
        ["stage", "plain", "dagster step", "difference"],
        [[s, v["plain_s"], v["dagster_step_s"], v["dagster_step_s"] - v["plain_s"]] for s, v in stages.items()],
    )
    print_table(
        "orchestration overhead (median of runs)",
        ["side", "wall s", "cpu s"],
        [
            ["plain script", summary["plain"]["wall_s"], summary["plain"]["cpu_s"]],
            ["dagster in process", summary["dagster"]["wall_s"], summary["dagster"]["cpu_s"]],
            ["difference (dagster overhead)", payload["overhead_wall_s"], payload["overhead_cpu_s"]],
            ["ratio dagster/plain", wall_ratio, cpu_ratio],
            ["ratio, median of adjacent pairs", median(paired), ""],
            ["instance setup (once; not in the run)", payload["dagster"]["instance_setup_s"],
             payload["dagster"]["instance_setup_cpu_s"]],
        ],
    )
    verdict = "within" if wall_ratio <= TARGET_RATIO else "ABOVE"
    print(
        f"\nwall ratio {wall_ratio:.3f}x ({verdict} the {TARGET_RATIO}x target), CPU ratio {cpu_ratio:.3f}x;"
        f" load average {load_before} before the runs; results: {path}"
    )


def _measure(args: argparse.Namespace) -> dict[str, Any]:
    spec = load_spec(args.rows)
    load_before = round(os.getloadavg()[0], 2)
    warm_up()
    order, runs = _run_sides(spec, args.rows, args.repeats)
    reference = _require_same_work(runs)
    payload = _payload(spec, args, order, runs, reference, load_before)
    path = write_results("orchestration_overhead", payload)
    _print_summary(payload, path)
    return payload


if __name__ == "__main__":
    main()
