"""How the wall time of select_model grows with cross-validation folds x candidates.

Every candidate is the same HistGradientBoostingClassifier pipeline (60
iterations, no early stopping) on the credit data; grid points differ only in
random_state, which that configuration ignores, so each fit costs the same.
Folds in {2, 3, 5} x candidates in {1, 2, 4}; each combination is timed
`--repeats` times in a shuffled order and the median kept (the fastest run is
fitted too: the least disturbed by other load). A straight line
time = a + b * (folds x candidates) is fitted by least squares: R^2 says how
linear the growth is and b is the cost of one cross-validation fit. A second
fit, time = a + b * fits + c * candidates, separates the per-candidate work
(latency measurement, serialized size) from the per-fit work. The same line is
fitted to the process CPU time (one thread), which other load on the machine
disturbs far less than the wall clock.

    python -m bench.selection_cost [--rows 20000] [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import itertools
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from bench._common import median, print_table, timed, write_results

FOLDS = (2, 3, 5)
CANDIDATES = (1, 2, 4)
# a fixed amount of work per fit: no early stopping, so random_state changes nothing but the label
ESTIMATOR = "sklearn.ensemble.HistGradientBoostingClassifier"
PARAMS = {"max_iter": 60, "early_stopping": False}


def feature_set(rows: int):
    from ml_pipelines.core.features import build_feature_set
    from ml_pipelines.datasets.credit import generate
    from ml_pipelines.spec import PipelineSpec

    spec = PipelineSpec.model_validate(
        {
            "name": "selection_cost",
            "task": "classification",
            "target": "defaulted",
            "source": {"kind": "synthetic", "generator": "ml_pipelines.datasets.credit:generate"},
            "features": {
                "numeric": ["income", "age", "employment_years", "debt_ratio", "credit_lines", "dependents"],
                "categorical": ["purpose", "home_ownership"],
            },
            "models": [{"name": "gbm", "estimator": ESTIMATOR}],
        }
    )
    return build_feature_set(spec, generate(rows=rows, seed=7))


def candidates(n: int):
    from ml_pipelines.core.models import expand_candidates
    from ml_pipelines.spec import SklearnModel

    model = SklearnModel(name="gbm", estimator=ESTIMATOR, params=PARAMS, search={"random_state": list(range(n))})
    return expand_candidates([model])


def run(features, folds: int, n_candidates: int) -> dict[str, Any]:
    from ml_pipelines.core.selection import select_model

    result = select_model(features, candidates(n_candidates), metric="roc_auc", cv_folds=folds)
    assert len(result.results) == n_candidates
    return {
        "fit_seconds_per_fold": [r.fit_seconds for r in result.results],
        "refit_seconds": result.refit_seconds,
        "roc_auc": result.best.mean,
    }


def least_squares(columns: list[np.ndarray], y: np.ndarray) -> tuple[np.ndarray, float]:
    design = np.column_stack([np.ones_like(y), *columns])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - design @ coef
    r2 = 1 - float(residual @ residual) / float(((y - y.mean()) ** 2).sum())
    return coef, r2


@contextmanager
def thread_limit(threads: int) -> Iterator[None]:
    if threads <= 0:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads):
        yield


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per combination (median kept)")
    parser.add_argument("--threads", type=int, default=1, help="native threads per pool; 0 = library defaults")
    parser.add_argument("--seed", type=int, default=0, help="seed of the shuffled run order")
    args = parser.parse_args(argv)

    features = feature_set(args.rows)
    grid = list(itertools.product(FOLDS, CANDIDATES))
    order = [cell for _ in range(args.repeats) for cell in grid]
    random.Random(args.seed).shuffle(order)
    print(f"selection cost: {len(features.train):,} training rows, folds {FOLDS} x candidates {CANDIDATES}, "
          f"{args.repeats} runs each, shuffled")
    walls: dict[tuple[int, int], list[float]] = {cell: [] for cell in grid}
    cpus: dict[tuple[int, int], list[float]] = {cell: [] for cell in grid}
    details: dict[tuple[int, int], dict[str, Any]] = {}
    with thread_limit(args.threads):
        run(features, 2, 1)  # warm-up: imports, first skops dump
        for folds, n in order:
            outcome, wall, cpu = timed(lambda: run(features, folds, n))
            walls[(folds, n)].append(wall)
            cpus[(folds, n)].append(cpu)
            details[(folds, n)] = outcome

    cells = []
    for folds, n in grid:
        cells.append({
            "folds": folds,
            "candidates": n,
            "fits": folds * n,
            "wall_s": median(walls[(folds, n)]),
            "runs_s": walls[(folds, n)],
            "best_wall_s": min(walls[(folds, n)]),
            "cpu_s": median(cpus[(folds, n)]),
            "mean_fit_s": float(np.mean(details[(folds, n)]["fit_seconds_per_fold"])),
            "refit_s": details[(folds, n)]["refit_seconds"],
        })
    fits = np.array([c["fits"] for c in cells], dtype=float)
    n_candidates = np.array([c["candidates"] for c in cells], dtype=float)
    wall = np.array([c["wall_s"] for c in cells])
    (intercept, slope), r2 = least_squares([fits], wall)
    (intercept2, per_fit, per_candidate), r2_two = least_squares([fits, n_candidates], wall)
    best = np.array([c["best_wall_s"] for c in cells])
    (best_intercept, best_slope), best_r2 = least_squares([fits], best)
    cpu = np.array([c["cpu_s"] for c in cells])
    (cpu_intercept, cpu_slope), cpu_r2 = least_squares([fits], cpu)

    print_table(
        "select_model wall time (median)",
        ["folds", "candidates", "fits", "wall s", "predicted s", "cpu s", "mean fit s"],
        [[c["folds"], c["candidates"], c["fits"], c["wall_s"], intercept + slope * c["fits"], c["cpu_s"],
          c["mean_fit_s"]] for c in cells],
    )
    print(f"\nlinear fit  wall = {intercept:.3f} s + {slope:.4f} s x (folds x candidates)   R^2 = {r2:.4f}")
    print(f"two terms   wall = {intercept2:.3f} s + {per_fit:.4f} s x fits + {per_candidate:.4f} s x candidates"
          f"   R^2 = {r2_two:.4f}")
    print(f"best runs   wall = {best_intercept:.3f} s + {best_slope:.4f} s x (folds x candidates)   R^2 = {best_r2:.4f}")
    print(f"cpu time    cpu = {cpu_intercept:.3f} s + {cpu_slope:.4f} s x (folds x candidates)   R^2 = {cpu_r2:.4f}")

    payload = {
        "rows": args.rows,
        "training_rows": len(features.train),
        "estimator": ESTIMATOR,
        "params": PARAMS,
        "folds": list(FOLDS),
        "candidates": list(CANDIDATES),
        "repeats": args.repeats,
        "threads": args.threads or "library defaults",
        "cells": cells,
        "linear_fit": {"intercept_s": intercept, "per_fit_s": slope, "r2": r2},
        "two_term_fit": {"intercept_s": intercept2, "per_fit_s": per_fit, "per_candidate_s": per_candidate,
                         "r2": r2_two},
        "best_run_linear_fit": {"intercept_s": best_intercept, "per_fit_s": best_slope, "r2": best_r2},
        "cpu_time_linear_fit": {"intercept_s": cpu_intercept, "per_fit_s": cpu_slope, "r2": cpu_r2},
        "linear": r2 >= 0.95,
    }
    path = write_results("selection_cost", payload)
    print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
