"""The credit_default chain at scale: seconds and peak memory per step, a fitted
per-million-rows slope per step, the whole run, and the bytes stored between steps.

The shipped spec (ml_pipelines/defs/pipelines/credit_default/defs.yaml) with the candidate
list trimmed to logreg + gbm (gbm keeps its grid) and the generator's `rows` set, run as
the `credit_default_retrain_job` through Dagster on the in-process executor (dg.execute_job,
as a run worker runs a run; see run_once) on a temp SQLite instance, with the project's IO
manager (LocalFrameIOManager: DataFrames as Parquet) on a temp folder. Each size runs in a
fresh child process (after an untimed 5,000-row run in that process for imports and
first-use costs), so its peak memory is its own.

Per step: wall seconds (STEP_START -> STEP_SUCCESS in the event log), and the peak RSS and
the user and system CPU seconds of the process while the step ran (sampled every 20 ms);
linearity is judged on wall seconds and reported on user CPU seconds too. Every size but the largest runs
--repeats times (half of the rounds, rounded up, before the largest size's run, the rest after), and each step's
median counts. Slopes (seconds per million rows):
between each pair of adjacent sizes, and a least-squares fit over all sizes; a step is
linear when its slope between the two largest sizes is within 1.3x its slope between the
two before. Bytes between steps: what the IO manager stored (each output's stored_bytes),
against the same outputs pickled as Dagster's pickle IO managers store them (counted
after the run, outside the timings): the baseline of the same run.

Targets at 10M rows (2-core machine): the whole run under 240 s, peak memory under 6 GB,
every step linear, evaluation no slower than training, stored bytes under 40% of pickle.

    python -m bench.scale [--rows 100000 1000000 10000000] [--threads 0] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from bench._common import print_table, write_results
from bench.orchestration_overhead import SPEC_FILE, _step_seconds, thread_limit

SIZES = (100_000, 1_000_000, 10_000_000)
CANDIDATES = ("logreg", "gbm")
STORED = ("raw_data", "validated_data", "features", "trained_model", "evaluation", "model_package")
CPU_MEASURES = ("user_cpu_s", "system_cpu_s")  # all threads and ended children, in the order the sampler keeps them
MEASURES = ("seconds", *CPU_MEASURES)  # per step
TARGETS = {"wall_s": 240.0, "peak_gb": 6.0, "slope_ratio": 1.3, "bytes_ratio": 0.4}


def load_spec(rows: int):
    from ml_pipelines.spec import PipelineSpec

    attributes = yaml.safe_load(SPEC_FILE.read_text())["attributes"]
    attributes["source"].setdefault("params", {})["rows"] = rows
    attributes["models"] = [m for m in attributes["models"] if m["name"] in CANDIDATES]
    return PipelineSpec.model_validate(attributes)


class ProcessSampler:
    """This process's RSS and CPU seconds (user and system, all threads and ended child
    processes) every `every` seconds, with the time of each sample."""

    def __init__(self, every: float = 0.02):
        import psutil

        self.process, self.every = psutil.Process(), every
        self.samples: list[tuple[float, int, float, float]] = []  # (time, rss, user, system)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            cpu = self.process.cpu_times()  # children: once a step's child process (BentoML's build) has ended
            self.samples.append((time.time(), self.process.memory_info().rss,
                                 cpu.user + cpu.children_user, cpu.system + cpu.children_system))
            self._stop.wait(self.every)

    def __enter__(self) -> ProcessSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self, start: float = 0.0, end: float = float("inf")) -> int:
        return max((rss for t, rss, _, _ in self.samples if start <= t <= end), default=0)

    def cpu(self, start: float, end: float) -> dict[str, float]:
        """User and system CPU seconds between two times, each end interpolated between samples."""
        times = [sample[0] for sample in self.samples]
        used = {}
        for field, name in enumerate(CPU_MEASURES, start=2):
            values = [sample[field] for sample in self.samples]
            used[name] = float(np.interp(end, times, values) - np.interp(start, times, values))
        return used


class PickleCounter:
    """A file that only counts what is written to it."""

    def __init__(self) -> None:
        self.bytes = 0

    def write(self, data: bytes) -> int:
        size = memoryview(data).nbytes
        self.bytes += size
        return size


def pickled_size(value: Any) -> int:
    counter = PickleCounter()
    pickle.dump(value, counter, protocol=pickle.HIGHEST_PROTOCOL)  # the protocol Dagster pickles with
    return counter.bytes


ROWS_ENV, ROOT_ENV = "BENCH_SCALE_ROWS", "BENCH_SCALE_ROOT"  # what scale_job builds (it runs in this process)
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}  # run config: no per-event console lines


def scale_job():
    """The retrain job at $BENCH_SCALE_ROWS rows, its resources under $BENCH_SCALE_ROOT, on the
    in-process executor (the local default). A module-level function, so that dg.reconstructable
    can name it and dg.execute_job run it as a run worker runs a run."""
    import dagster as dg

    from ml_pipelines.components import build_pipeline_defs
    from ml_pipelines.resources import LocalFrameIOManager, local_resources

    spec, root = load_spec(int(os.environ[ROWS_ENV])), Path(os.environ[ROOT_ENV])
    resources = {**local_resources(root), "io_manager": LocalFrameIOManager(base_dir=str(root / "io"))}
    defs = dg.Definitions.merge(build_pipeline_defs(spec),
                                dg.Definitions(resources=resources, executor=dg.in_process_executor))
    return defs.resolve_job_def(f"{spec.name}_retrain_job")


def run_once(rows: int, root: Path) -> dict[str, Any]:
    """One retrain job at `rows`: per-step seconds and peak RSS, bytes stored and pickled.

    It runs through dg.execute_job, as a run worker runs a run (`dagster dev`, a schedule, a
    sensor). Not execute_in_process: that test API keeps every step's output in memory until
    the run ends (for its result's output_for_node), which no real run does, and at 10M rows
    that is gigabytes of frames no real run holds."""
    import dagster as dg

    from ml_pipelines.core import frame_codec

    os.environ[ROWS_ENV], os.environ[ROOT_ENV] = str(rows), str(root)
    home = root / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    with dg.DagsterInstance.local_temp(tempdir=str(home)) as instance, ProcessSampler() as sampler:
        started, started_at = time.perf_counter(), time.time()
        with dg.execute_job(dg.reconstructable(scale_job), instance=instance, raise_on_error=True,
                            run_config=QUIET) as result:
            wall, ended_at = time.perf_counter() - started, time.time()
            run_id = result.run_id
            materializations = result.get_asset_materialization_events()
        steps = _step_windows(instance, run_id)
    spec = load_spec(rows)
    selection = frame_codec.loads((root / "io" / spec.name / "trained_model").read_bytes())
    stored = {
        e.asset_key.path[-1]: int(e.materialization.metadata["stored_bytes"].value)
        for e in materializations
        if "stored_bytes" in e.materialization.metadata  # an output the IO manager stored
    }
    return {
        "rows": rows,
        "wall_s": wall,
        "peak_rss_bytes": sampler.peak(),
        **sampler.cpu(started_at, ended_at),
        "steps": {
            step: {"seconds": end - start, "peak_rss_bytes": sampler.peak(start, end), **sampler.cpu(start, end)}
            for step, (start, end) in steps.items()
        },
        "stored_bytes": stored,
        "pickled_bytes": _pickled_sizes(root / "io", spec.name),
        "selected": selection.best.label,
        "refit_s": selection.refit_seconds,  # the winner's fit on every training row, inside trained_model
    }


def _step_windows(instance, run_id: str) -> dict[str, tuple[float, float]]:
    """(start, end) timestamps per step, from the run's event log."""
    seconds = _step_seconds(instance, run_id)
    windows: dict[str, tuple[float, float]] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is not None and event.step_key and event.event_type_value == "STEP_SUCCESS":
            step = event.step_key.split("__", 1)[-1]
            windows[step] = (entry.timestamp - seconds[step], entry.timestamp)
    return windows


def _pickled_sizes(io_root: Path, pipeline: str) -> dict[str, int]:
    """Each stored output as Dagster's pickle IO managers would have written it."""
    from ml_pipelines.core import frame_codec

    return {
        name: pickled_size(frame_codec.loads((io_root / pipeline / name).read_bytes()))
        for name in STORED
        if (io_root / pipeline / name).exists()
    }


def warm_up(rows: int, root: Path) -> None:
    """An untimed run for imports and first-use costs. In process: dg.execute_job loads a
    reconstructable job once per process (it caches the definition), so only the measured
    run goes through it."""
    import dagster as dg

    os.environ[ROWS_ENV], os.environ[ROOT_ENV] = str(rows), str(root)
    (root / "dagster_home").mkdir()
    with dg.DagsterInstance.local_temp(tempdir=str(root / "dagster_home")) as instance:
        scale_job().execute_in_process(instance=instance, raise_on_error=True, run_config=QUIET)


def child(rows: int, threads: int, out: Path) -> None:
    """One size in this process: an untimed 5,000-row run first, then the measured one."""
    with thread_limit(threads):
        for size, run in ((5_000, warm_up), (rows, run_once)):
            root = Path(tempfile.mkdtemp(prefix=f"bench-scale-{size}-"))
            try:
                outcome = run(size, root)
            finally:
                shutil.rmtree(root, ignore_errors=True)
    outcome["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    out.write_text(json.dumps(outcome))


def measure(rows: int, threads: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as folder:
        out = Path(folder) / "outcome.json"
        load = round(os.getloadavg()[0], 2)
        command = [sys.executable, "-m", "bench.scale", "--child", str(rows), "--threads", str(threads), "--out", str(out)]
        subprocess.run(command, check=True)
        outcome = json.loads(out.read_text())
    outcome["load_average_before"] = load
    return outcome


def measure_all(sizes: list[int], threads: int, repeats: int) -> list[dict[str, Any]]:
    """Every size but the largest `repeats` times, the largest once, each run in a fresh process.
    The slope ratio divides a slope ending at the largest size by one between the smaller sizes,
    so the smaller sizes' rounds are split before and after the largest run: a drift in the
    machine's speed during the benchmark then moves both sides alike."""
    runs: dict[int, list[dict[str, Any]]] = {rows: [] for rows in sizes}
    order = [sizes[:-1]] * ((repeats + 1) // 2) + [sizes[-1:]] + [sizes[:-1]] * (repeats // 2)
    for round_sizes in order:
        for rows in round_sizes:
            print(f"scale: credit_default ({', '.join(CANDIDATES)}), {rows:,} rows ...", flush=True)
            runs[rows].append(measure(rows, threads))
            print(f"  whole run {runs[rows][-1]['wall_s']:.1f}s, "
                  f"peak {runs[rows][-1]['peak_rss_bytes'] / 1e9:.2f} GB", flush=True)
    return [merged_runs(runs[rows]) for rows in sizes]


def merged_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each step's median seconds over the runs of one size, the largest peak, and the median
    run's bytes. At the small sizes a step lasts about a second, and one run's noise would swing
    the 100k->1M slope that the linearity ratio divides by."""
    merged = json.loads(json.dumps(sorted(runs, key=lambda o: o["wall_s"])[len(runs) // 2]))
    for name, step in merged["steps"].items():
        for measure in MEASURES:
            each = [o["steps"][name][measure] for o in runs if name in o["steps"]]
            step[measure], step[f"{measure}_each_run"] = float(np.median(each)), each
    for measure in CPU_MEASURES:
        merged[measure] = float(np.median([o[measure] for o in runs]))
    merged["peak_rss_bytes"] = max(o["peak_rss_bytes"] for o in runs)
    merged["wall_s_each_run"] = [o["wall_s"] for o in runs]
    return merged


# ---------------------------------------------------------------- analysis


def slopes(outcomes: list[dict[str, Any]], measure: str = "seconds") -> dict[str, dict[str, Any]]:
    """Seconds (wall, or the measure's CPU seconds) per million rows for each step and the whole
    run: between adjacent sizes, a least-squares fit over all sizes, and the last adjacent slope
    over the one before."""
    sizes = np.array([o["rows"] for o in outcomes], dtype=float) / 1e6
    names = [*outcomes[-1]["steps"], "whole run"]
    whole_run = "wall_s" if measure == "seconds" else measure
    table = {}
    for name in names:
        seconds = np.array([
            o[whole_run] if name == "whole run" else o["steps"].get(name, {}).get(measure, 0.0) for o in outcomes
        ])
        adjacent = [float((seconds[i + 1] - seconds[i]) / (sizes[i + 1] - sizes[i])) for i in range(len(sizes) - 1)]
        fitted = float(np.polyfit(sizes, seconds, 1)[0]) if len(sizes) > 1 else None
        ratio = adjacent[-1] / adjacent[-2] if len(adjacent) > 1 and adjacent[-2] > 0 else None
        table[name] = {"seconds": seconds.tolist(), "adjacent_s_per_million": adjacent,
                       "fitted_s_per_million": fitted, "last_slope_over_previous": ratio}
    return table


def _nonlinear(slope_table: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Steps whose last slope is over the target ratio times the one before; a step under a
    second at the largest size has no slope worth judging."""
    return {
        name: row["last_slope_over_previous"] for name, row in slope_table.items()
        if name != "whole run" and row["last_slope_over_previous"] is not None and row["seconds"][-1] >= 1.0
        and row["last_slope_over_previous"] > TARGETS["slope_ratio"]
    }


def verdicts(outcomes: list[dict[str, Any]], slope_table: dict[str, dict[str, Any]],
             cpu_slope_table: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The targets at the largest size. Linearity is judged on wall seconds; the same on user
    CPU seconds tells the code's work apart from the time the kernel spends handing the process
    memory (system CPU: on this VM, first touches of guest memory the host took back cost
    seconds per GB)."""
    largest = outcomes[-1]
    steps = largest["steps"]
    stored, pickled = sum(largest["stored_bytes"].values()), sum(largest["pickled_bytes"].values())
    return {
        "rows": largest["rows"],
        "wall_s": largest["wall_s"],
        "wall_within_target": largest["wall_s"] < TARGETS["wall_s"],
        "peak_gb": largest["peak_rss_bytes"] / 1e9,
        "peak_within_target": largest["peak_rss_bytes"] / 1e9 < TARGETS["peak_gb"],
        "nonlinear_steps": _nonlinear(slope_table),
        "nonlinear_steps_user_cpu": _nonlinear(cpu_slope_table),
        "user_cpu_s": largest["user_cpu_s"],
        "system_cpu_s": largest["system_cpu_s"],
        "evaluation_over_training": steps["evaluation"]["seconds"] / steps["trained_model"]["seconds"],
        "stored_bytes": stored,
        "pickled_bytes": pickled,
        "stored_over_pickled": stored / pickled,
        "bytes_within_target": stored / pickled < TARGETS["bytes_ratio"],
    }


def report(outcomes: list[dict[str, Any]], slope_table: dict[str, dict[str, Any]],
           cpu_slope_table: dict[str, dict[str, Any]], verdict: dict[str, Any]) -> None:
    sizes = [f"{o['rows']:,}" for o in outcomes]

    def at_largest(name: str, measure: str) -> float:
        largest = outcomes[-1]
        return largest[measure] if name == "whole run" else largest["steps"].get(name, {}).get(measure, 0.0)

    print_table(
        "seconds per step (and peak RSS, GB) at each size; slopes in seconds per million rows; "
        f"CPU seconds (user, system) at {sizes[-1]}",
        ["step", *[f"{s} s" for s in sizes], *[f"{s} GB" for s in sizes], "fitted slope", "last/previous slope",
         "user CPU s", "system CPU s", "user CPU last/previous"],
        [
            [name, *row["seconds"],
             *[(o["peak_rss_bytes"] if name == "whole run" else o["steps"].get(name, {}).get("peak_rss_bytes", 0)) / 1e9
               for o in outcomes],
             row["fitted_s_per_million"], row["last_slope_over_previous"] or "",
             at_largest(name, "user_cpu_s"), at_largest(name, "system_cpu_s"),
             cpu_slope_table[name]["last_slope_over_previous"] or ""]
            for name, row in slope_table.items()
        ],
    )
    print_table(
        "bytes stored between steps (IO manager, Parquet) vs the same outputs pickled",
        ["rows", "stored MB", "pickled MB", "stored / pickled"],
        [[f"{o['rows']:,}", sum(o["stored_bytes"].values()) / 1e6, sum(o["pickled_bytes"].values()) / 1e6,
          sum(o["stored_bytes"].values()) / sum(o["pickled_bytes"].values())] for o in outcomes],
    )
    print(
        f"\nat {verdict['rows']:,} rows: whole run {verdict['wall_s']:.1f}s (target < {TARGETS['wall_s']:.0f}s), "
        f"peak {verdict['peak_gb']:.2f} GB (target < {TARGETS['peak_gb']} GB), evaluation/training "
        f"{verdict['evaluation_over_training']:.2f}x (target <= 1), stored/pickled {verdict['stored_over_pickled']:.3f}x "
        f"(target < {TARGETS['bytes_ratio']}); steps over the {TARGETS['slope_ratio']}x slope ratio: "
        f"{verdict['nonlinear_steps'] or 'none'} "
        f"(on user CPU seconds: {verdict['nonlinear_steps_user_cpu'] or 'none'}; "
        f"system CPU {verdict['system_cpu_s']:.1f}s of the run)"
    )


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=list(SIZES), help="sizes, ascending")
    parser.add_argument("--threads", type=int, default=0, help="native threads per pool; 0 = library defaults")
    # five: a step's rounds at 100k differ by up to 0.8 s, the size of some steps' whole 100k->1M difference
    parser.add_argument("--repeats", type=int, default=5, help="runs of each size but the largest (medians)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.threads, args.out)
        return None
    if args.rows != sorted(args.rows) or len(args.rows) < 2:
        parser.error("--rows takes at least two sizes, ascending")
    outcomes = measure_all(args.rows, args.threads, args.repeats)
    slope_table, cpu_slope_table = slopes(outcomes), slopes(outcomes, "user_cpu_s")
    verdict = verdicts(outcomes, slope_table, cpu_slope_table)
    payload = {"pipeline": "credit_default", "candidates": list(CANDIDATES), "sizes": args.rows,
               "repeats": args.repeats, "threads": args.threads or "library defaults", "targets": TARGETS,
               "verdict": verdict, "slopes": slope_table, "slopes_user_cpu": cpu_slope_table, "runs": outcomes}
    path = write_results("scale", payload)
    report(outcomes, slope_table, cpu_slope_table, verdict)
    print(f"results: {path}")
    return payload


if __name__ == "__main__":
    main()
