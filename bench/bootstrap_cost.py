"""What the evaluation's bootstrap costs: today's per-row-counts bootstrap (core.bootstrap)
against the indexing bootstrap it replaced (every metric recomputed with sklearn on a
resampled copy of the holdout), on the same predictions and the same resamples, at
several holdout sizes. Reports seconds per resample for each and the ratio. Up to
BLOCK_ROWS holdout rows both draw the same resamples and must give the same intervals (to
1e-9); above, the shipped bootstrap draws its resamples in blocks (other resamples, the
same distribution): the same resamples are then checked with blocks off, and the shipped
intervals must lie within 15% of each interval's width of the indexing bootstrap's.

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
    from ml_pipelines.core.bootstrap import BLOCK_ROWS
    from ml_pipelines.core.evaluation import bootstrap_intervals

    # the replaced implementation, kept once, as the tests' reference
    from ml_pipelines_tests.core.test_bootstrap import indexing_bootstrap

    p = holdout(rows)
    old, old_s, old_cpu = timed(lambda: indexing_bootstrap(METRICS, p, samples))
    new, new_s, new_cpu = timed(lambda: bootstrap_intervals(METRICS, p, samples))
    same_draws = new if rows <= BLOCK_ROWS else bootstrap_intervals(METRICS, p, samples, block_rows=None)
    differences = [abs(same_draws[m].low - old[m][0]) + abs(same_draws[m].high - old[m][1]) for m in old]
    # shipped vs indexing, as a share of the indexing interval's width (0 when the draws are the same)
    drift = max(max(abs(new[m].low - low), abs(new[m].high - high)) / (high - low) for m, (low, high) in old.items())
    return {
        "rows": rows, "samples": samples, "blocked_draws": rows > BLOCK_ROWS,
        "indexing_s": old_s, "counts_s": new_s, "indexing_cpu_s": old_cpu, "counts_cpu_s": new_cpu,
        "ms_per_resample": {"indexing": 1000 * old_s / samples, "counts": 1000 * new_s / samples},
        "speedup_wall": old_s / new_s, "speedup_cpu": old_cpu / new_cpu,
        "largest_interval_difference": max(differences), "same_intervals": max(differences) < 1e-9,
        "shipped_bound_shift_over_width": drift, "within_monte_carlo": drift < 0.15,
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
         "same draws: same intervals", "blocked draws", "shipped bound shift / width"],
        [[r["rows"], r["ms_per_resample"]["indexing"], r["ms_per_resample"]["counts"], r["speedup_wall"],
          r["speedup_cpu"], r["same_intervals"], r["blocked_draws"], r["shipped_bound_shift_over_width"]]
         for r in results],
    )
    path = write_results("bootstrap_cost", {"metrics": METRICS, "load_average_before": load_before,
                                            "results": results})
    print(f"wrote {path}")
    return 0 if all(r["same_intervals"] and r["within_monte_carlo"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
