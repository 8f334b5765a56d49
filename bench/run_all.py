"""Run every benchmark, each in its own process, then print one summary table.

    python -m bench.run_all        (or: make bench)

Each benchmark writes bench/results/<name>.json; this reads them back.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from bench._common import RESULTS_DIR, print_table

BENCHMARKS = ("orchestration_overhead", "validation_throughput", "scale")


def main() -> int:
    failed = []
    for name in BENCHMARKS:
        print(f"\n===== bench.{name}", flush=True)
        started = time.perf_counter()
        code = subprocess.call([sys.executable, "-m", f"bench.{name}"])
        print(f"===== bench.{name}: exit {code} after {time.perf_counter() - started:.0f}s", flush=True)
        if code != 0:
            failed.append(name)
    rows = []
    orchestration = _load("orchestration_overhead") if "orchestration_overhead" not in failed else None
    if orchestration:
        rows.append([
            f"orchestration_overhead ({orchestration['rows']:,} rows)",
            f"plain {orchestration['plain']['wall_s']:.1f}s wall / {orchestration['plain']['cpu_s']:.1f}s CPU",
            f"dagster {orchestration['dagster']['wall_s']:.1f}s wall / {orchestration['dagster']['cpu_s']:.1f}s CPU",
            f"{orchestration['ratio_wall']:.3f}x wall, {orchestration['ratio_cpu']:.3f}x CPU"
            f" (target <= {orchestration['target_ratio']}x)",
        ])
    validation = _load("validation_throughput") if "validation_throughput" not in failed else None
    if validation:
        rows.append([
            f"validation_throughput ({validation['rows']:,} rows)",
            f"pandas {validation['pandas']['rows_per_s']:,.0f} rows/s",
            f"GX {validation['great_expectations']['rows_per_s']:,.0f} rows/s",
            f"GX takes {validation['ratio_time_gx_over_pandas']:.1f}x the pandas time",
        ])
    scale = _load("scale") if "scale" not in failed else None
    if scale:
        verdict = scale["verdict"]
        rows.append([
            f"scale ({verdict['rows']:,} rows, {' + '.join(scale['candidates'])})",
            f"pickled {verdict['pickled_bytes'] / 1e6:,.0f} MB between steps",
            (f"{verdict['wall_s']:.0f}s wall, peak {verdict['peak_gb']:.2f} GB,"
             f" stored {verdict['stored_bytes'] / 1e6:,.0f} MB"),
            (f"stored {verdict['stored_over_pickled']:.2f}x pickled; evaluation"
             f" {verdict['evaluation_over_training']:.2f}x training;"
             f" non-linear steps: {', '.join(verdict['nonlinear_steps']) or 'none'}"),
        ])
    print_table("summary (bench/results/*.json)", ["benchmark", "baseline", "measured", "ratio"], rows)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


def _load(name: str) -> dict | None:
    path = RESULTS_DIR / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


if __name__ == "__main__":
    sys.exit(main())
