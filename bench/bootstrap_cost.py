"""What the evaluation's bootstrap costs: today's per-row-counts bootstrap (core.bootstrap)
against the indexing bootstrap it replaced (every metric recomputed with sklearn on a
resampled copy of the holdout), on the same predictions and the same resamples, at
several holdout sizes. Reports seconds per resample for each, the ratio, and that both
give the same intervals (to 1e-9).

    python -m bench.bootstrap_cost [--rows 20000 200000] [--samples 200]
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import numpy as np

from bench._common import print_table, timed, write_results

METRICS = ["roc_auc", "accuracy", "f1", "log_loss"]  # credit_default's evaluation metrics


def holdout(rows: int, seed: int = 0):
    from ml_pipelines.core.evaluation import Predictions

    rng = np.random.default_rng(seed)
    y = (rng.random(rows) < 0.1).astype(int)  # credit_default's share of defaults
    score = 1 / (1 + np.exp(-(rng.normal(size=rows) + 1.2 * y - 2.2)))
    proba = np.column_stack([1 - score, score])
    return Predictions(y, (score >= 0.5).astype(int), proba, (0, 1))


def measure(rows: int, samples: int) -> dict[str, Any]:
    from ml_pipelines.core.evaluation import bootstrap_intervals

    # the replaced implementation, kept once, as the tests' reference
    from ml_pipelines_tests.core.test_bootstrap import indexing_bootstrap

    p = holdout(rows)
    old, old_s, old_cpu = timed(lambda: indexing_bootstrap(METRICS, p, samples))
    new, new_s, new_cpu = timed(lambda: bootstrap_intervals(METRICS, p, samples))
    differences = [abs(new[m].low - old[m][0]) + abs(new[m].high - old[m][1]) for m in old]
    return {
        "rows": rows, "samples": samples,
        "indexing_s": old_s, "counts_s": new_s, "indexing_cpu_s": old_cpu, "counts_cpu_s": new_cpu,
        "ms_per_resample": {"indexing": 1000 * old_s / samples, "counts": 1000 * new_s / samples},
        "speedup_wall": old_s / new_s, "speedup_cpu": old_cpu / new_cpu,
        "largest_interval_difference": max(differences), "same_intervals": max(differences) < 1e-9,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args(argv)
    load_before = [round(x, 2) for x in os.getloadavg()]
    results = [measure(rows, args.samples) for rows in args.rows]
    print_table(
        f"bootstrap of {', '.join(METRICS)}: {args.samples} resamples (load average {load_before} before)",
        ["holdout rows", "indexing ms/resample", "counts ms/resample", "speedup (wall)", "speedup (CPU)",
         "same intervals"],
        [[r["rows"], r["ms_per_resample"]["indexing"], r["ms_per_resample"]["counts"], r["speedup_wall"],
          r["speedup_cpu"], r["same_intervals"]] for r in results],
    )
    path = write_results("bootstrap_cost", {"metrics": METRICS, "load_average_before": load_before,
                                            "results": results})
    print(f"wrote {path}")
    return 0 if all(r["same_intervals"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
