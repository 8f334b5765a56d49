"""Great Expectations vs hand-written pandas: the same rules on 1M rows of credit data.

The rules are the credit_default spec's schema resolved against clean data
(ml_pipelines.core.validation.resolve_schema), as the asset check resolves them
against a champion. A copy of the data then gets a few bad values (out of range,
unknown category, nulls where none are allowed); a second copy adds +inf to
income as well. Both engines validate each copy:
  - run_suite: the GX 1.x suite through an ephemeral context and its validation
    definition (result format BOOLEAN_ONLY), then what failed again on its columns
    (BASIC, for the counts), no Data Docs (what the raw_data check runs, less the HTML);
  - check_with_pandas: the same rules as vectorized pandas masks.
They must agree: the same failed expectations with the same unexpected counts,
equal to the injected ones, and both pass the clean data. Reported: rows/s of each
(median of alternating runs) and GX time / pandas time, for each copy. GX's fixed cost per call
(context, suite and validation definition set-up, and GX's work per expectation) is measured on
1,000 rows and reported apart, with the per-row cost above it (microseconds per row).
GX's own work besides the checks is timed apart with the same pandas calls GX makes (its batch
fingerprints, and a copy of the whole frame for each value expectation on a column holding nulls),
as is the finite-values rule the pandas checks run as `isin([inf, -inf])` against `np.isinf`.

    python -m bench.validation_throughput [--rows 1000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import hashlib
from typing import Any

import numpy as np
import pandas as pd
import yaml

from bench._common import median, print_table, timed, write_results
from bench.orchestration_overhead import SPEC_FILE

# (column, expectations, rows, value): bad values written into distinct rows
INJECTED = (
    ("age", "expect_column_values_to_be_between", 7, 150),  # explicit max 100
    ("debt_ratio", "expect_column_values_to_be_between", 3, -0.5),  # explicit min 0
    ("credit_lines", "expect_column_values_to_be_between", 2, 10_000),  # inferred range
    ("purpose", "expect_column_values_to_be_in_set", 5, "crypto"),  # explicit categories
    ("employment_years", "expect_column_values_to_not_be_null", 4, np.nan),  # only income may be null
    ("home_ownership", "expect_column_values_to_not_be_null", 2, None),
)
# a second data set adds +inf: infinite, and above income's inferred maximum. GX's `between` fails on
# it in the whole suite, then the failures pass runs the finite check it stood for on income (with
# its nulls: two more copies of the frame), so this case costs GX more than the first
INFINITE = (("income", ("expect_column_values_to_not_be_in_set", "expect_column_values_to_be_between"), 3, np.inf),)


def load_spec():
    from ml_pipelines.spec import PipelineSpec

    return PipelineSpec.model_validate(yaml.safe_load(SPEC_FILE.read_text())["attributes"])


def inject(frame: pd.DataFrame, seed: int = 11, injected: tuple = INJECTED) -> tuple[pd.DataFrame, dict]:
    """A copy of frame with injected values written into distinct random rows; the expected failure counts."""
    bad = frame.copy()
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(frame), size=sum(n for _, _, n, _ in injected), replace=False)
    expected: dict[tuple[str, str], int] = {}
    start = 0
    for column, expectations, n, value in injected:
        index = rows[start : start + n]
        start += n
        position = bad.columns.get_loc(column)
        bad.iloc[index, position] = value
        for expectation in (expectations,) if isinstance(expectations, str) else expectations:
            expected[(expectation, column)] = expected.get((expectation, column), 0) + n
    return bad, expected


def failures(report) -> dict[tuple[str, str], int | None]:
    return {(f.expectation, f.column): f.unexpected_count for f in report.failures}


def _require_agreement(gx_report, pd_report, expected) -> None:
    """Both engines found exactly the injected failures, and judged the same expectations."""
    if failures(gx_report) != failures(pd_report):
        raise AssertionError(f"the engines disagree: GX {failures(gx_report)} vs pandas {failures(pd_report)}")
    if failures(gx_report) != expected:
        raise AssertionError(f"GX found {failures(gx_report)}, injected {expected}")
    if gx_report.success or pd_report.success or gx_report.evaluated != pd_report.evaluated:
        raise AssertionError(
            f"success GX {gx_report.success} pandas {pd_report.success}; "
            f"evaluated GX {gx_report.evaluated} pandas {pd_report.evaluated}"
        )


# the suite's value expectations: GX drops a column's null rows from the whole frame for each
NULL_FILTERING = {"expect_column_values_to_be_between", "expect_column_values_to_be_in_set",
                  "expect_column_values_to_not_be_in_set"}


def _median_time(fn, repeats: int = 5) -> float:
    return median([timed(fn)[1] for _ in range(repeats)])


def gx_costs_apart(frame: pd.DataFrame, schema, gx_report) -> dict[str, Any]:
    """GX's own work besides the checks, timed alone on the same frame with the same pandas calls
    GX 1.24 makes:
      - its batch fingerprint: pandas' hash of every column and the index, then MD5, on the whole
        frame (first pass) and on the failed expectations' columns (second pass);
      - one copy of the whole frame less the column's null rows, for every value expectation
        (between, in set, not in set) on a column that holds nulls (first pass);
    and the finite-values rule as the pandas checks run it (`isin([inf, -inf])` on every numeric
    column) against `np.isinf` on the same columns. GX runs it only where no range or value set
    stands for it (core.validation.finite_by_rule): the columns are counted apart."""
    from ml_pipelines.core.validation import INFINITIES, build_suite

    def fingerprint(part: pd.DataFrame) -> str:
        return hashlib.md5(pd.util.hash_pandas_object(part, index=True).to_numpy()).hexdigest()

    failed_columns = [c for c in frame.columns if c in {f.column for f in gx_report.failures}]
    failed_part = frame[failed_columns] if failed_columns else frame  # as run_suite's second pass takes it
    value_checks = [(e.expectation_type, e.column) for e in build_suite(schema, "costs").expectations
                    if e.expectation_type in NULL_FILTERING and e.column in frame.columns]
    copies = [column for _, column in value_checks if frame[column].isna().any()]
    numeric = [rule.column for rule in schema.rules if rule.must_be_finite and rule.column in frame.columns
               and pd.api.types.is_numeric_dtype(frame[rule.column].dtype)]
    return {
        "fingerprint_s": _median_time(lambda: (fingerprint(frame), fingerprint(failed_part))),
        "frame_copies": len(copies),
        "frame_copies_s": _median_time(lambda: [frame[frame[c].notna()] for c in copies]),
        "finite_rule_columns": len(numeric),
        "finite_rule_columns_gx": sum(kind == "expect_column_values_to_not_be_in_set" for kind, _ in value_checks),
        "finite_rule_isin_s": _median_time(lambda: [frame[c].isin(INFINITIES) for c in numeric]),
        "finite_rule_isinf_s": _median_time(lambda: [np.isinf(frame[c].to_numpy()) for c in numeric]),
    }


def print_costs_apart(costs: dict[str, Any], gx_s: float, pd_s: float) -> None:
    own = costs["fingerprint_s"] + costs["frame_copies_s"]
    isinf_pd_s = pd_s - costs["finite_rule_isin_s"] + costs["finite_rule_isinf_s"]
    print(
        f"\nGX's own work, timed apart: batch fingerprints {costs['fingerprint_s']:.3f} s, "
        f"{costs['frame_copies']} copies of the frame less a column's nulls {costs['frame_copies_s']:.3f} s; "
        f"without them GX would take {(gx_s - own) / pd_s:.1f}x the pandas time"
        f"\nthe finite-values rule on {costs['finite_rule_columns']} numeric columns: isin "
        f"{costs['finite_rule_isin_s']:.3f} s (pandas; GX on {costs['finite_rule_columns_gx']} of them, where no "
        f"range or value set stands for it), np.isinf {costs['finite_rule_isinf_s']:.4f} s; "
        f"with np.isinf pandas would take {isinf_pd_s:.3f} s and GX {gx_s / isinf_pd_s:.1f}x that"
    )


def _payload(rows: int, schema, gx_report, times: dict[str, list[float]], fixed: float,
             clean_s: tuple[float, float], repeats: int) -> dict[str, Any]:
    gx_s, pd_s = median(times["great_expectations"]), median(times["pandas"])
    clean_gx_s, clean_pd_s = clean_s
    return {
        "rows": rows,
        "columns": len(schema.rules),
        "expectations": gx_report.evaluated,
        "repeats": repeats,
        "great_expectations": {
            "median_s": gx_s,
            "rows_per_s": rows / gx_s,
            "runs_s": times["great_expectations"],
            "fixed_cost_s": fixed,
            "rows_per_s_less_fixed_cost": rows / (gx_s - fixed) if gx_s > fixed else None,
            "us_per_row_less_fixed_cost": (gx_s - fixed) / rows * 1e6 if gx_s > fixed else None,
            "clean_data_s": clean_gx_s,
        },
        "pandas": {
            "median_s": pd_s,
            "rows_per_s": rows / pd_s,
            "runs_s": times["pandas"],
            "clean_data_s": clean_pd_s,
        },
        "ratio_time_gx_over_pandas": gx_s / pd_s,
        "agreement": {
            "failed_expectations": [
                {"expectation": e, "column": c, "unexpected": n} for (e, c), n in sorted(failures(gx_report).items())
            ],
            "identical": True,
            "clean_data_passes_both": True,
        },
        "schema_rules": schema.to_dict(),
    }


def _alternate(gx, pandas_checks, frame: pd.DataFrame, expected: dict, repeats: int):
    """Each engine `repeats` times on frame, alternating; their times, once both agree with expected."""
    times: dict[str, list[float]] = {"great_expectations": [], "pandas": []}
    reports: dict[str, Any] = {}
    for _ in range(repeats):
        for engine, fn in (("great_expectations", gx), ("pandas", pandas_checks)):
            report, wall, _ = timed(lambda: fn(frame))
            times[engine].append(wall)
            reports[engine] = report
            print(f"  {engine:18s} {wall:8.3f}s  {len(frame) / wall:14,.0f} rows/s")
    _require_agreement(reports["great_expectations"], reports["pandas"], expected)
    return times, reports["great_expectations"]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per engine (alternating)")
    args = parser.parse_args(argv)

    from ml_pipelines.core.sources import coerce_declared_types, load_source
    from ml_pipelines.core.validation import check_with_pandas, resolve_schema, run_suite

    spec = load_spec()
    source = spec.source.model_copy(update={"params": {**spec.source.params, "rows": args.rows}})
    loaded = load_source(source)
    clean = coerce_declared_types(loaded.frame, spec.data_schema, loaded.description)
    categorical = (spec.target,) if spec.task == "classification" else ()
    schema = resolve_schema(spec.data_schema, clean, categorical_columns=categorical)
    bad, expected = inject(clean)

    def gx(frame: pd.DataFrame):
        return run_suite(frame, schema, suite_name="bench_credit")

    def pandas_checks(frame: pd.DataFrame):
        return check_with_pandas(frame, schema)

    # warm-up (imports, first context) and the agreement checks on clean data
    gx(clean.iloc[:1000])
    clean_gx, clean_gx_s, _ = timed(lambda: gx(clean))
    clean_pd, clean_pd_s, _ = timed(lambda: pandas_checks(clean))
    if not (clean_gx.success and clean_pd.success):
        raise AssertionError(
            f"clean data must pass both: GX {clean_gx.summary_lines()}, pandas {clean_pd.summary_lines()}"
        )

    fixed = median([timed(lambda: gx(clean.iloc[:1000]))[1] for _ in range(3)])

    print(f"validation throughput: {len(bad):,} rows, {len(schema.rules)} columns, {args.repeats} runs per engine")
    times, gx_report = _alternate(gx, pandas_checks, bad, expected, args.repeats)
    print("with +inf in income as well:")
    bad_inf, expected_inf = inject(clean, injected=INJECTED + INFINITE)
    times_inf, _ = _alternate(gx, pandas_checks, bad_inf, expected_inf, args.repeats)

    gx_s, pd_s = median(times["great_expectations"]), median(times["pandas"])
    gx_inf_s, pd_inf_s = median(times_inf["great_expectations"]), median(times_inf["pandas"])
    rows = len(bad)
    payload = _payload(rows, schema, gx_report, times, fixed, (clean_gx_s, clean_pd_s), args.repeats)
    payload["great_expectations"]["costs_apart"] = costs = gx_costs_apart(bad, schema, gx_report)
    payload["with_infinities"] = {
        "injected_too": [{"column": c, "rows": n, "value": str(v)} for c, _, n, v in INFINITE],
        "great_expectations_s": gx_inf_s, "pandas_s": pd_inf_s, "ratio_time_gx_over_pandas": gx_inf_s / pd_inf_s,
        "runs_s": times_inf,
    }
    path = write_results("validation_throughput", payload)
    print_table(
        "validation throughput (median of runs, data with injected failures)",
        ["engine", "seconds", "rows/s", "vs pandas"],
        [
            ["great_expectations (run_suite)", gx_s, rows / gx_s, gx_s / pd_s],
            ["pandas (check_with_pandas)", pd_s, rows / pd_s, 1.0],
            ["GX, with +inf in income too", gx_inf_s, rows / gx_inf_s, gx_inf_s / pd_inf_s],
            ["pandas, with +inf in income too", pd_inf_s, rows / pd_inf_s, 1.0],
            ["GX fixed cost per call (1k rows)", fixed, "", ""],
        ],
    )
    per_row = payload["great_expectations"]["us_per_row_less_fixed_cost"]
    print(f"\nGX cost per run: {fixed:.3f} s fixed + {per_row or 0:.3f} us per row "
          f"({len(schema.rules)} columns, {gx_report.evaluated} rules)")
    print_costs_apart(costs, gx_s, pd_s)
    print(
        f"\nGX takes {gx_s / pd_s:.1f}x the pandas time; both report "
        + ", ".join(f"{c} {e.removeprefix('expect_column_values_to_')}={n}" for (e, c), n in expected.items())
        + f"; results: {path}"
    )
    return payload


if __name__ == "__main__":
    main()
