"""What the step usage sampler costs: the credit_default chain through Dagster in process with
the sampler on (ML_PIPELINES_USAGE_INTERVAL=0.1, the default: every asset's materialization
carries its step's usage figures) and off (=0), in the same process, alternating
ON OFF OFF ON ... so that drift in machine load hits both sides alike.

Both sides are bench.orchestration_overhead.run_dagster: the real spec with the generator's
`rows` overridden (100k by default) and no floor on the gate (a few thousand rows miss the
spec's floor, which would stop the chain before packaging), build_pipeline_defs + local resources in a temp dir,
`credit_default_retrain_job` via execute_in_process on a temp SQLite instance, a fresh
registry each run. Both must end with the same data hash, metrics and artifacts; the ON
runs must carry the figures on every chain step, the OFF runs on none, or the benchmark
fails. Reported: the median wall and CPU time per side, ON / OFF, and the median of the
adjacent pairs' ratios. Target: ON / OFF < 1.03 (under 3%).

Native thread pools are limited to --threads (default 1) on both sides, as in
orchestration_overhead.

    python -m bench.sampler_overhead [--rows 100000] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench._common import median, print_table, write_results
from bench.orchestration_overhead import load_spec, run_dagster, thread_limit

TARGET_RATIO = 1.03
INTERVAL_VARIABLE = "ML_PIPELINES_USAGE_INTERVAL"  # read by Settings.from_env() in every step
SIDES = {"on": "0.1", "off": "0"}
CHAIN_STEPS = 6


def bench_spec(rows: int):
    """The shipped credit_default spec with `rows` rows and no gate floor, so that every size runs the
    whole chain (at 100k rows the floor passes anyway)."""
    spec = load_spec(rows)
    gate = spec.evaluation.gate.model_copy(update={"min": None})
    return spec.model_copy(update={"evaluation": spec.evaluation.model_copy(update={"gate": gate})})


def run_side(side: str, spec, root: Path) -> dict[str, Any]:
    os.environ[INTERVAL_VARIABLE] = SIDES[side]
    try:
        outcome = run_dagster(spec, root)
    finally:
        os.environ.pop(INTERVAL_VARIABLE, None)
    expected = CHAIN_STEPS if side == "on" else 0
    if outcome["measured_steps"] != expected:
        raise AssertionError(f"sampler {side}: {outcome['measured_steps']} steps carry usage figures, not {expected}")
    return outcome


def _run_sides(spec, rows: int, repeats: int) -> tuple[list[str], dict[str, list[dict[str, Any]]]]:
    """Each side `repeats` times in ABBA order (on off off on on off ...)."""
    order = [("on", "off")[(i + (i // 2)) % 2] for i in range(2 * repeats)]
    runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    print(f"sampler overhead: credit_default, {rows:,} rows, {repeats} runs per side ({' '.join(order)})")
    for side in order:
        root = Path(tempfile.mkdtemp(prefix=f"bench-sampler-{side}-"))
        try:
            outcome = run_side(side, spec, root)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        outcome["load_average"] = round(os.getloadavg()[0], 2)
        runs[side].append(outcome)
        print(f"  sampler {side:3s} wall {outcome['wall_s']:7.2f}s  cpu {outcome['cpu_s']:7.2f}s"
              f"  load {outcome['load_average']}")
    return order, runs


def _require_same_work(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    reference = runs["off"][0]
    for side, outcomes in runs.items():
        for outcome in outcomes:
            for field in ("raw_data_hash", "data_version", "metrics", "artifacts", "selected"):
                if outcome[field] != reference[field]:
                    raise AssertionError(f"sampler {side}: {field} {outcome[field]} != {reference[field]}")
    return reference


def _payload(args: argparse.Namespace, order: list[str], runs: dict[str, list[dict[str, Any]]],
             reference: dict[str, Any], load_before: float) -> dict[str, Any]:
    summary = {side: {k: median([o[k] for o in runs[side]]) for k in ("wall_s", "cpu_s")} for side in runs}
    # adjacent runs (on off | off on | on off ...) share the machine's load of the moment
    paired = [runs["on"][i]["wall_s"] / runs["off"][i]["wall_s"] for i in range(args.repeats)]
    wall_ratio = summary["on"]["wall_s"] / summary["off"]["wall_s"]
    return {
        "pipeline": "credit_default",
        "rows": args.rows,
        "repeats": args.repeats,
        "threads": args.threads or "library defaults",
        "order": order,
        "load_average_before": load_before,
        "sampling_interval_s": float(SIDES["on"]),
        "selected_model": reference["selected"],
        **{
            f"sampler_{side}": {
                **summary[side],
                "runs_wall_s": [o["wall_s"] for o in runs[side]],
                "runs_cpu_s": [o["cpu_s"] for o in runs[side]],
                "runs_load_average": [o["load_average"] for o in runs[side]],
            }
            for side in ("on", "off")
        },
        "ratio_wall": wall_ratio,
        "ratio_cpu": summary["on"]["cpu_s"] / summary["off"]["cpu_s"],
        "ratio_wall_paired": {"median": median(paired), "pairs": paired},
        "target_ratio": TARGET_RATIO,
        "within_target": wall_ratio < TARGET_RATIO,
    }


def _measure(args: argparse.Namespace) -> dict[str, Any]:
    spec = bench_spec(args.rows)
    load_before = round(os.getloadavg()[0], 2)
    warm = Path(tempfile.mkdtemp(prefix="bench-sampler-warmup-"))
    try:  # imports, the first GX context, thread pools and caches, paid before any timed run
        run_side("on", bench_spec(min(args.rows, 5000)), warm)
    finally:
        shutil.rmtree(warm, ignore_errors=True)
    order, runs = _run_sides(spec, args.rows, args.repeats)
    payload = _payload(args, order, runs, _require_same_work(runs), load_before)
    path = write_results("sampler_overhead", payload)
    print_table(
        "sampler overhead (median of runs)",
        ["side", "wall s", "cpu s"],
        [
            ["sampler off", payload["sampler_off"]["wall_s"], payload["sampler_off"]["cpu_s"]],
            ["sampler on", payload["sampler_on"]["wall_s"], payload["sampler_on"]["cpu_s"]],
            ["ratio on/off", payload["ratio_wall"], payload["ratio_cpu"]],
            ["ratio, median of adjacent pairs", payload["ratio_wall_paired"]["median"], ""],
        ],
    )
    verdict = "within" if payload["within_target"] else "ABOVE"
    print(f"\nwall ratio {payload['ratio_wall']:.3f}x ({verdict} the {TARGET_RATIO}x target); load average "
          f"{load_before} before the runs; results: {path}")
    return payload


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3, help="runs per side")
    parser.add_argument("--threads", type=int, default=1, help="native threads per pool; 0 = library defaults")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    with thread_limit(args.threads):
        return _measure(args)


if __name__ == "__main__":
    main()
