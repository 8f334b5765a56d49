"""How model selection grows with the training rows, with selection.sample_rows and without.

One HistGradientBoostingClassifier candidate (the selection_cost benchmark's fixed-work
configuration), 3 folds, credit data at --rows sizes. For each size, select_model runs
twice in the same run: on every row (sample_rows=None, the baseline) and with
sample_rows=--sample. Cross-validation time (the whole selection less the refit) and the
refit time are reported, each size's time against the smallest size's, so that
"flat in rows above the sample size" and "the refit alone grows" can be read off.

    python -m bench.selection_rows [--rows 25000 50000 100000 200000] [--sample 25000] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from bench._common import print_table, timed, write_results
from bench.selection_cost import candidates, feature_set, thread_limit


def select(features, sample_rows: int | None) -> dict[str, Any]:
    from ml_pipelines.core.selection import select_model

    result, wall, cpu = timed(lambda: select_model(features, candidates(1), metric="roc_auc", cv_folds=3,
                                                    sample_rows=sample_rows))
    return {"wall_s": wall, "cpu_s": cpu, "refit_s": result.refit_seconds, "cv_s": wall - result.refit_seconds,
            "cv_rows": result.cv_rows, "train_rows": result.train_rows, "roc_auc": result.best.mean}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[25_000, 50_000, 100_000, 200_000])
    parser.add_argument("--sample", type=int, default=25_000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    load_before = [round(x, 2) for x in os.getloadavg()]
    results = []
    with thread_limit(args.threads):
        select(feature_set(5000), None)  # warm-up: imports and first fits
        for rows in args.rows:
            features = feature_set(rows)
            results.append({"rows": rows, "all_rows": select(features, None), "sampled": select(features, args.sample)})
            print(f"  {rows:>9,} rows done", flush=True)
    first = results[0]
    table = []
    for r in results:
        for side in ("all_rows", "sampled"):
            cell = r[side]
            table.append([r["rows"], side, cell["cv_rows"], cell["cv_s"], cell["cv_s"] / first[side]["cv_s"],
                          cell["refit_s"], cell["roc_auc"]])
    print_table(f"select_model, 1 candidate x 3 folds, sample_rows={args.sample:,} (load {load_before} before)",
                ["train rows", "cross-validated", "cv rows", "cv s", "cv vs smallest", "refit s", "cv roc_auc"], table)
    largest = results[-1]
    summary = {
        "cv_growth_all_rows": largest["all_rows"]["cv_s"] / first["all_rows"]["cv_s"],
        "cv_growth_sampled": largest["sampled"]["cv_s"] / first["sampled"]["cv_s"],
        "rows_growth": largest["rows"] / first["rows"],
        "selection_speedup_at_largest": largest["all_rows"]["wall_s"] / largest["sampled"]["wall_s"],
    }
    print("\n" + ", ".join(f"{k} {v:.2f}" for k, v in summary.items()))
    path = write_results("selection_rows", {"sample_rows": args.sample, "threads": args.threads,
                                            "load_average_before": load_before, "results": results, **summary})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
