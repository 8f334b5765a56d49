"""core.validation: schema inference and resolution, the Great Expectations suite,
and the pandas checker that must agree with it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml_pipelines.core.data_docs import page_in_site
from ml_pipelines.core.validation import (
    ColumnRule,
    ResolvedSchema,
    ValidatedData,
    build_suite,
    check_with_pandas,
    infer_column_rule,
    infer_column_type,
    infer_schema,
    resolve_schema,
    row_failures,
    run_suite,
)
from ml_pipelines.spec import FileSource, SchemaSpec

ROWS = 400


@pytest.fixture(scope="module")
def clean() -> pd.DataFrame:
    rng = np.random.default_rng(11)
    return pd.DataFrame(
        {
            "age": rng.integers(18, 91, ROWS).astype("int64"),
            "income": np.where(rng.random(ROWS) < 0.05, np.nan, rng.normal(50_000, 9_000, ROWS).round(2)),
            "debt_ratio": rng.uniform(0, 1, ROWS),
            "purpose": pd.array(rng.choice(["car", "home", "education"], ROWS), dtype="str"),
            "defaulted": rng.integers(0, 2, ROWS).astype("int64"),
        }
    )


@pytest.fixture(scope="module")
def schema(clean) -> ResolvedSchema:
    spec = SchemaSpec.model_validate(
        {
            "columns": {
                "age": {"type": "int", "min": 18, "max": 100},
                "purpose": {"type": "category", "values": ["car", "home", "education"]},
                "income": {"min": 0},
            },
            "nullable": ["income"],
            "row_count": {"min": 100},
        }
    )
    return resolve_schema(spec, clean, categorical_columns=("defaulted",))


def broken(clean: pd.DataFrame) -> pd.DataFrame:
    """Known numbers of bad rows: 6 null ages, 9 out-of-range ages, 4 unseen categories,
    3 negative incomes, 5 debt ratios beyond the inferred range."""
    frame = clean.copy()
    frame["age"] = frame["age"].astype("float64")
    frame.loc[0:5, "age"] = np.nan
    frame.loc[10:15, "age"] = 150.0
    frame.loc[16:18, "age"] = 3.0
    frame.loc[20:23, "purpose"] = "boat"
    frame.loc[30:32, "income"] = -10.0
    frame.loc[40:44, "debt_ratio"] = 7.5
    return frame


def unexpected(report) -> dict[tuple[str, str], int]:
    return {(f.expectation, f.column): f.unexpected_count for f in report.failures if f.unexpected_count is not None}


# ---------------------------------------------------------------- inference


def test_infer_column_types():
    assert infer_column_type(pd.Series([1, 2, 3])) == "int"
    assert infer_column_type(pd.Series([1.0, None, 3.0])) == "int"  # an int column that holds nulls
    assert infer_column_type(pd.Series([1.5, None, 3.0])) == "float"
    assert infer_column_type(pd.Series([1.0, 2.0])) == "float"
    assert infer_column_type(pd.Series([True, False])) == "bool"
    assert infer_column_type(pd.Series(pd.to_datetime(["2026-01-01", "2026-01-02"]))) == "datetime"
    assert infer_column_type(pd.Series(["a", "b", "a"])) == "category"
    assert infer_column_type(pd.Series([f"id-{i}" for i in range(200)])) == "str"


def test_infer_numeric_range_is_widened_and_never_below_zero_for_positive_data():
    rule = infer_column_rule(pd.Series([10.0, 20.0, None], name="income"))
    assert rule.type == "int"  # whole numbers with a null
    assert rule.nullable is True
    assert (rule.min, rule.max) == (5, 25)  # widened by half the span
    rule = infer_column_rule(pd.Series([1.5, 2.5, 3.5], name="ratio"))
    assert rule.type == "float" and rule.nullable is False
    assert rule.min == 0.5 and rule.max == pytest.approx(4.5)
    rule = infer_column_rule(pd.Series([0.1, 10.0], name="x"))
    assert rule.min == 0.0  # 0.1 - 4.95 would be negative for data that never is
    rule = infer_column_rule(pd.Series([-5.0, 5.0], name="delta"))
    assert rule.min == -10.0 and rule.max == 10.0


def test_infer_categories_and_target_values():
    rule = infer_column_rule(pd.Series(["home", "car", None, "car"], name="purpose"))
    assert rule.type == "category"
    assert rule.values == ("car", "home")
    assert rule.nullable is True
    rule = infer_column_rule(pd.Series([1, 0, 1], name="y"), categorical_values=True)
    assert rule.values == (0, 1) and rule.min is None
    assert all(type(v) is int for v in rule.values)  # plain Python values, not numpy scalars


def test_infer_schema_covers_every_column(clean):
    inferred = infer_schema(clean)
    assert [r.column for r in inferred.rules] == list(clean.columns)
    assert inferred.rule("income").nullable is True
    assert inferred.rule("age").nullable is False
    assert inferred.rule("age").min <= clean["age"].min() and inferred.rule("age").max >= clean["age"].max()


def test_resolve_schema_explicit_values_win(schema, clean):
    age = schema.rule("age")
    assert (age.type, age.min, age.max, age.nullable) == ("int", 18, 100, False)
    purpose = schema.rule("purpose")
    assert purpose.values == ("car", "home", "education") and purpose.nullable is False
    income = schema.rule("income")
    assert income.min == 0 and income.max >= clean["income"].max() and income.nullable is True
    assert schema.rule("defaulted").values == (0, 1)
    assert schema.rule("debt_ratio").type == "float"  # filled in by inference
    assert schema.row_count_min == 100


def test_resolve_schema_without_infer_keeps_only_declared_columns(clean):
    spec = SchemaSpec.model_validate({"columns": {"age": {"min": 18}}, "infer": False})
    resolved = resolve_schema(spec, clean)
    assert [r.column for r in resolved.rules] == ["age"]
    assert resolved.rule("age") == ColumnRule("age", None, 18, None, None, nullable=False, reference_null_share=0.0,
                                              declared=("min",))
    assert resolved.rule("age").declared_bound("min") == 18 and resolved.rule("age").declared_bound("max") is None


def test_only_the_bounds_the_spec_states_are_declared(clean):
    spec = SchemaSpec.model_validate({"columns": {"age": {"max": 100}}})
    rule = resolve_schema(spec, clean).rule("age")
    assert rule.min is not None and rule.max == 100  # min inferred, max stated
    assert rule.declared == ("max",) and rule.declared_bound("min") is None
    assert ResolvedSchema.from_dict(resolve_schema(spec, clean).to_dict()).rule("age").declared == ("max",)
    # a reference's rule carries no claim about what the current spec states
    inherited = resolve_schema(SchemaSpec(), clean, reference=ResolvedSchema((rule,))).rule("age")
    assert inherited.max == 100 and inherited.declared == ()


def test_resolve_schema_prefers_the_champion_reference(clean):
    reference = ResolvedSchema((ColumnRule("age", "int", 20, 60, None, False, reference_null_share=0.0),))
    resolved = resolve_schema(SchemaSpec(), clean, reference=reference)
    assert resolved.rules == reference.rules


def test_declared_type_change_drops_inferred_range(clean):
    spec = SchemaSpec.model_validate({"columns": {"defaulted": {"type": "category"}}})
    rule = resolve_schema(spec, clean).rule("defaulted")
    assert rule.type == "category" and rule.min is None and rule.max is None and rule.values is None


def test_schema_round_trips_through_json(schema):
    assert ResolvedSchema.from_dict(schema.to_dict()) == schema


# ---------------------------------------------------------------- GX suite vs pandas


def test_suite_has_one_expectation_per_rule(schema):
    import great_expectations as gx

    gx.get_context(mode="ephemeral")  # a suite needs an active context, as in run_suite
    suite = build_suite(schema, "loans_raw_data")
    types = [e.expectation_type for e in suite.expectations]
    # one expectation for every column's presence (the failures pass names each missing one)
    assert "expect_column_to_exist" not in types
    assert types[0] == "expect_table_columns_to_match_set"
    assert suite.expectations[0].column_set == [r.column for r in schema.rules]
    assert suite.expectations[0].exact_match is False  # columns the spec does not name are allowed
    assert types.count("expect_table_row_count_to_be_between") == 1
    # non-nullable columns, and nullable ones with a null-share limit (mostly < 1)
    assert types.count("expect_column_values_to_not_be_null") == len(schema.rules)
    # no separate finite check: every numeric column has two bounds or a set of values, and
    # `between` or `in set` fails on +-inf; a column with neither gets one
    assert all((r.min is not None and r.max is not None) or r.values for r in schema.rules if r.must_be_finite)
    assert "expect_column_values_to_not_be_in_set" not in types
    unranged = ResolvedSchema((ColumnRule("debt_ratio", type="float", min=0.0),))
    assert [(e.expectation_type, e.column) for e in build_suite(unranged, "u").expectations[-2:]] == [
        ("expect_column_values_to_not_be_in_set", "debt_ratio"), ("expect_column_values_to_be_between", "debt_ratio")]


def test_clean_data_passes_both_engines(clean, schema):
    gx_report = run_suite(clean, schema, suite_name="clean")
    pandas_report = check_with_pandas(clean, schema)
    assert gx_report.success, gx_report.summary_lines()
    assert pandas_report.success, pandas_report.summary_lines()
    assert gx_report.evaluated == pandas_report.evaluated
    assert gx_report.row_count == ROWS


def test_gx_and_pandas_agree_on_unexpected_counts(clean, schema):
    frame = broken(clean)
    gx_report = run_suite(frame, schema, suite_name="broken")
    pandas_report = check_with_pandas(frame, schema)
    expected = {
        ("expect_column_values_to_not_be_null", "age"): 6,
        ("expect_column_values_to_be_between", "age"): 9,
        ("expect_column_values_to_be_in_set", "purpose"): 4,
        ("expect_column_values_to_be_between", "income"): 3,
        ("expect_column_values_to_be_between", "debt_ratio"): 5,
    }
    assert not gx_report.success and not pandas_report.success
    assert unexpected(gx_report) == expected
    assert unexpected(pandas_report) == expected
    assert gx_report.evaluated == pandas_report.evaluated
    assert "expect_column_values_to_be_in_set on purpose: 4 unexpected" in gx_report.summary_lines()


def test_row_failures_mask_matches_the_bad_rows(clean, schema):
    frame = broken(clean)
    bad, counts = row_failures(frame, schema)
    assert counts[("expect_column_values_to_be_between", "age")] == 9
    expected_bad = set(range(0, 6)) | set(range(10, 19)) | set(range(20, 24)) | set(range(30, 33)) | set(range(40, 45))
    assert set(frame.index[bad]) == expected_bad
    assert not row_failures(clean, schema)[0].any()


def test_missing_column_and_row_count_fail_both_engines(clean, schema):
    frame = clean.drop(columns=["purpose"]).iloc[:50]
    gx_report = run_suite(frame, schema, suite_name="short")
    pandas_report = check_with_pandas(frame, schema)
    for report in (gx_report, pandas_report):
        assert not report.success
        failed = {(f.expectation, f.column) for f in report.failures}
        assert ("expect_column_to_exist", "purpose") in failed
        assert ("expect_table_row_count_to_be_between", None) in failed


def test_each_missing_column_is_named_by_both_engines(tmp_path, clean, schema):
    """The whole suite checks every column's presence with one expectation; when it fails, the
    failures pass checks each missing column's, so the report names them one by one, as pandas does."""
    frame = clean.drop(columns=["purpose", "debt_ratio"])  # a category and a bounded numeric column
    report = run_suite(frame, schema, suite_name="missing", project_dir=tmp_path / "credit", run_name="run-m")
    pandas_report = check_with_pandas(frame, schema)
    present = {("expect_column_to_exist", "purpose"), ("expect_column_to_exist", "debt_ratio")}
    for each in (report, pandas_report):
        failed = {(f.expectation, f.column) for f in each.failures}
        assert present <= failed and not any(kind == "expect_table_columns_to_match_set" for kind, _ in failed)
    assert [(f.expectation, f.column, f.detail) for f in report.failures[:2]] == [
        ("expect_column_to_exist", "purpose", "column is missing"),
        ("expect_column_to_exist", "debt_ratio", "column is missing"),
    ]  # first, in the schema's order
    assert run_suite(clean, schema, suite_name="present").success


def test_wrong_type_fails_both_engines(clean, schema):
    frame = clean.assign(purpose=np.arange(ROWS))
    gx_failed = {f.column for f in run_suite(frame, schema, suite_name="typed").failures}
    pandas_failed = {f.column for f in check_with_pandas(frame, schema).failures}
    assert "purpose" in gx_failed and "purpose" in pandas_failed


def test_data_docs_list_every_validation_of_the_persistent_context(tmp_path, clean, schema):
    """One GX file context per pipeline: each validation keeps its page, named by the Dagster run
    id, with raw_data as the data asset; both indexes list them all, and the pages carry the
    offline styles."""
    project = tmp_path / "credit"
    first = run_suite(clean.iloc[:150], schema, suite_name="credit_raw_data", project_dir=project, run_name="run-1")
    second = run_suite(clean.iloc[:150], schema, suite_name="credit_raw_data", project_dir=project, run_name="run-2")
    site = project / "gx" / "uncommitted" / "data_docs" / "local_site"
    pages = sorted(site.glob("validations/credit_raw_data/*/*/*.html"))
    assert [p.parts[-3] for p in pages] == ["run-1", "run-2"]
    assert {p.name for p in pages} == {"pipeline-raw_data.html"}  # the data asset is raw_data
    assert first.docs_path.startswith("file://") and "/run-1/" in first.docs_path and "/run-2/" in second.docs_path
    gx_index = (site / "index.html").read_text()
    assert "run-1" in gx_index and "run-2" in gx_index and "'asset_name': 'raw_data'" in gx_index
    offline = (site / "offline_index.html").read_text()
    assert offline.count("<tr><td>") == 2 and ">run-1</a>" in offline and ">raw_data</td>" in offline
    assert "ml_pipelines: styles for Great Expectations Data Docs" in pages[0].read_text()
    assert "https://maxcdn.bootstrapcdn.com" not in pages[0].read_text()  # no CDN links (core.data_docs)
    assert run_suite(clean.iloc[:150], schema, suite_name="ephemeral").docs_path is None


@pytest.mark.parametrize("persistent", [True, False])
def test_no_validated_frame_stays_in_memory_after_the_suite(tmp_path, clean, schema, persistent):
    """GX keeps its last context, and that context the last validated frame, process-wide:
    run_suite lets go of it, so a 10M-row frame is not held for the rest of the run."""
    import gc
    import weakref

    frame = clean.iloc[:150].copy()
    alive = weakref.ref(frame)
    report = run_suite(frame, schema, suite_name="credit_raw_data", project_dir=tmp_path / "p" if persistent else None,
                       run_name="run-1")
    del frame
    gc.collect()
    assert report.success and alive() is None


def test_a_failing_validation_page_shows_each_failure_with_its_count_and_sampled_values(tmp_path, clean, schema):
    """No Checkpoint runs the suite: the page the report links is still written (the failures'
    page, run with GX's BASIC result format), with the unexpected counts and sampled values."""
    report = run_suite(broken(clean), schema, suite_name="credit_raw_data", project_dir=tmp_path / "credit",
                       run_name="run-broken")
    assert unexpected(report)[("expect_column_values_to_be_between", "age")] == 9
    assert report.docs_path is not None and "/run-broken/" in report.docs_path
    site = Path(report.docs_site)
    page = (site / page_in_site(report.docs_path, site)).read_text()
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))
    assert "9 unexpected values found" in text and "4 unexpected values found" in text  # age range, purpose
    assert "Sampled Unexpected Values" in text and "boat" in text


def test_the_suite_passes_or_fails_fast_and_only_what_failed_runs_again_with_details(tmp_path, clean, schema):
    """The whole suite runs with GX's BOOLEAN_ONLY result format (no unexpected values sampled,
    no copy of the frame for them); the expectations that failed run again with BASIC on their
    columns, as "<suite>-failures": the report's counts and the page it links come from there."""
    project = tmp_path / "credit"
    report = run_suite(broken(clean), schema, suite_name="credit_raw_data", project_dir=project, run_name="run-b")
    stored = {}
    for path in (project / "gx" / "uncommitted" / "validations").rglob("*.json"):
        result = json.loads(path.read_text())
        stored[result["suite_name"]] = result
    assert set(stored) == {"credit_raw_data", "credit_raw_data-failures"}
    whole, failures = stored["credit_raw_data"], stored["credit_raw_data-failures"]
    # one expectation stands for the 5 columns' presence; age, income and debt_ratio's `between`
    # and defaulted's `in set` stand for their finite checks
    assert len(whole["results"]) + 4 + 4 == report.evaluated == check_with_pandas(broken(clean), schema).evaluated
    assert all(r["result"] == {} for r in whole["results"])  # pass or fail only
    assert sum(not r["success"] for r in whole["results"]) == len(report.failures) == len(failures["results"])
    assert {r["expectation_config"]["kwargs"]["column"] for r in failures["results"]} == {"age", "purpose",
                                                                                          "income", "debt_ratio"}
    assert not any(r["success"] for r in failures["results"])
    assert unexpected(report) == {
        ("expect_column_values_to_not_be_null", "age"): 6,
        ("expect_column_values_to_be_between", "age"): 9,
        ("expect_column_values_to_be_in_set", "purpose"): 4,
        ("expect_column_values_to_be_between", "income"): 3,
        ("expect_column_values_to_be_between", "debt_ratio"): 5,
    }
    assert "/credit_raw_data-failures/run-b/" in report.docs_path
    offline = (Path(report.docs_site) / "offline_index.html").read_text()
    assert ">credit_raw_data</td>" in offline and ">credit_raw_data-failures</td>" in offline
    passing = run_suite(clean, schema, suite_name="credit_raw_data", project_dir=project, run_name="run-c")
    assert passing.success and "/credit_raw_data/run-c/" in passing.docs_path


def test_validated_data_combines_partitions(clean, schema):
    parts = {
        "2026-01-02": ValidatedData(clean.iloc[100:], schema, 2),
        "2026-01-01": ValidatedData(clean.iloc[:100], schema, 1),
    }
    combined = ValidatedData.combine(parts)
    assert len(combined.frame) == ROWS
    assert combined.dropped_rows == 3
    assert combined.partitions == ("2026-01-01", "2026-01-02")
    assert combined.frame["age"].tolist() == clean["age"].tolist()
    with pytest.raises(ValueError, match="no validated partitions"):
        ValidatedData.combine({})


# ---------------------------------------------------------------- data faults that used to pass (issue 11)


def failures_by_rule(report) -> dict[tuple[str, str | None], tuple[int | None, str]]:
    return {(f.expectation, f.column): (f.unexpected_count, f.detail) for f in report.failures}


def both_engines(frame: pd.DataFrame, schema: ResolvedSchema, name: str):
    gx_report = run_suite(frame, schema, suite_name=name)
    pandas_report = check_with_pandas(frame, schema)
    assert gx_report.evaluated == pandas_report.evaluated
    assert failures_by_rule(gx_report) == failures_by_rule(pandas_report)
    return gx_report, pandas_report


def classification_spec(**schema):
    from ml_pipelines_tests.specs import make_spec

    return make_spec(
        name="loans", task="classification", target="defaulted", source={"kind": "csv", "path": "x.csv"},
        models=[{"name": "m", "estimator": "sklearn.linear_model.LogisticRegression"}], schema=schema,
    )


def test_reference_null_share_is_recorded_and_sets_the_default_limit(clean, schema):
    income = schema.rule("income")
    assert income.reference_null_share == pytest.approx(clean["income"].isna().mean())
    assert 0 < income.reference_null_share < 0.5
    assert income.max_null_share == 0.5  # mostly present in the reference, so it may not be mostly missing
    assert schema.rule("age").max_null_share is None  # not nullable: any null fails already
    assert ResolvedSchema.from_dict(schema.to_dict()) == schema


def test_a_mostly_present_column_that_is_now_all_null_fails_both_engines(clean, schema):
    frame = clean.assign(income=np.nan)
    reference_based = resolve_schema(SchemaSpec(nullable=["income"]), frame, reference=schema)
    assert reference_based.rule("income").reference_null_share == schema.rule("income").reference_null_share
    gx_report, _ = both_engines(frame, reference_based, "all_null")
    assert failures_by_rule(gx_report)[("expect_column_values_to_not_be_null", "income")] == (
        ROWS, "100.0% null, over max_null_share 0.5"
    )
    assert "expect_column_values_to_not_be_null on income: 400 unexpected (100.0% null, over max_null_share 0.5)" in (
        gx_report.summary_lines()
    )


def test_null_share_limits(clean, schema):
    def share_failure(frame, spec, reference=schema):
        resolved = resolve_schema(spec, frame, reference=reference)
        gx_report, _ = both_engines(frame, resolved, "share")
        return ("expect_column_values_to_not_be_null", "income") in failures_by_rule(gx_report)

    def nulls(share):
        return clean.assign(income=np.where(np.arange(ROWS) < share * ROWS, np.nan, 1.0))

    nullable = {"nullable": ["income"]}
    assert share_failure(nulls(0.6), SchemaSpec(**nullable))
    assert not share_failure(nulls(0.4), SchemaSpec(**nullable))  # under half is still mostly present
    assert not share_failure(nulls(0.5), SchemaSpec(**nullable))  # exactly the limit passes
    assert share_failure(nulls(0.2), SchemaSpec(**nullable, max_null_share=0.1))
    assert not share_failure(
        nulls(0.2), SchemaSpec(**nullable, max_null_share=0.1, columns={"income": {"max_null_share": 0.3}})
    )
    mostly_missing = ResolvedSchema((ColumnRule("income", "float", nullable=True, reference_null_share=0.7),))
    assert not share_failure(nulls(1.0), SchemaSpec(**nullable), reference=mostly_missing)


def test_a_reference_recorded_before_null_shares_keeps_working(clean):
    old = {"rules": [{"column": "age", "type": "int", "min": 0, "max": 120, "values": None, "nullable": False},
                     {"column": "income", "type": "float", "min": None, "max": None, "values": None,
                      "nullable": True}]}
    reference = ResolvedSchema.from_dict(old)
    resolved = resolve_schema(SchemaSpec(), clean, reference=reference)
    assert resolved.rule("age").reference_null_share == 0.0
    assert resolved.rule("income").reference_null_share is None and resolved.rule("income").max_null_share is None


def test_infinite_values_fail_both_engines_naming_the_column(clean, schema):
    frame = clean.copy()
    frame.loc[0:2, "income"] = np.inf  # passes `min: 0`
    frame.loc[5, "debt_ratio"] = -np.inf
    gx_report, _ = both_engines(frame, schema, "infinite")
    found = failures_by_rule(gx_report)
    assert found[("expect_column_values_to_not_be_in_set", "income")] == (3, "infinite values")
    assert found[("expect_column_values_to_not_be_in_set", "debt_ratio")] == (1, "infinite values")
    assert "expect_column_values_to_not_be_in_set on income: 3 unexpected (infinite values)" in (
        gx_report.summary_lines()
    )
    bad, _ = row_failures(frame, schema)
    assert set(frame.index[bad]) >= {0, 1, 2, 5}


def test_a_bounded_columns_infinities_fail_its_range_and_are_counted_in_the_failures_pass(tmp_path, clean, schema):
    """The whole suite runs no finite check on a column with two bounds (+-inf fails `between`,
    and GX would copy the frame again for a separate check). Where `between` fails on a column
    that holds +-inf, the failures pass runs the finite check, so the report still names and
    counts the infinite values, as the pandas checks do; a plain range failure adds no such check."""
    frame = clean.copy()
    frame.loc[0:2, "income"] = np.inf
    frame.loc[40:44, "debt_ratio"] = 7.5  # out of range, finite
    frame["defaulted"] = frame["defaulted"].astype("float64")
    frame.loc[7, "defaulted"] = -np.inf  # not one of the target's values
    project = tmp_path / "credit"
    report = run_suite(frame, schema, suite_name="inf", project_dir=project, run_name="run-inf")
    assert report.evaluated == check_with_pandas(frame, schema).evaluated
    assert failures_by_rule(report) == failures_by_rule(check_with_pandas(frame, schema)) == {
        ("expect_column_values_to_be_between", "income"): (3, ""),
        ("expect_column_values_to_not_be_in_set", "income"): (3, "infinite values"),
        ("expect_column_values_to_be_between", "debt_ratio"): (5, ""),
        ("expect_column_values_to_be_in_set", "defaulted"): (1, ""),
        ("expect_column_values_to_not_be_in_set", "defaulted"): (1, "infinite values"),
    }
    stored = {}
    for path in (project / "gx" / "uncommitted" / "validations").rglob("*.json"):
        result = json.loads(path.read_text())
        configs = [r["expectation_config"] for r in result["results"]]
        stored[result["suite_name"]] = [(c["type"], c["kwargs"].get("column")) for c in configs]
    assert "expect_column_values_to_not_be_in_set" not in {kind for kind, _ in stored["inf"]}
    assert sorted(stored["inf-failures"]) == [
        ("expect_column_values_to_be_between", "debt_ratio"),
        ("expect_column_values_to_be_between", "income"),
        ("expect_column_values_to_be_in_set", "defaulted"),
        ("expect_column_values_to_not_be_in_set", "defaulted"),
        ("expect_column_values_to_not_be_in_set", "income"),
    ]


def test_an_infinite_bound_keeps_the_separate_finite_check(clean):
    """`max: .inf` in YAML is a float bound that +inf does not break: the finite check stays."""
    frame = clean.assign(debt_ratio=clean["debt_ratio"].where(clean.index != 3, np.inf))
    schema = resolve_schema(SchemaSpec(columns={"debt_ratio": {"type": "float", "min": 0, "max": float("inf")}},
                                       infer=False), frame)
    gx_report, _ = both_engines(frame, schema, "open_ended")
    infinite = ("expect_column_values_to_not_be_in_set", "debt_ratio")
    assert failures_by_rule(gx_report) == {infinite: (1, "infinite values")}


def test_infinite_values_fail_without_a_range_and_widen_no_inferred_range(clean):
    frame = clean.assign(debt_ratio=clean["debt_ratio"].where(clean.index != 3, np.inf))
    unranged = resolve_schema(SchemaSpec(columns={"debt_ratio": {"type": "float"}}, infer=False), frame)
    assert (unranged.rule("debt_ratio").min, unranged.rule("debt_ratio").max) == (None, None)
    gx_report, _ = both_engines(frame, unranged, "unranged")
    assert failures_by_rule(gx_report) == {("expect_column_values_to_not_be_in_set", "debt_ratio"): (1, "infinite values")}
    inferred = infer_column_rule(frame["debt_ratio"])
    assert np.isfinite(inferred.max) and inferred.max < 2


def test_a_single_class_target_fails_both_engines_naming_it(clean):
    from ml_pipelines.core.validation import spec_schema

    frame = clean.assign(defaulted=0)
    schema = spec_schema(classification_spec(columns={"defaulted": {"type": "int", "values": [0, 1]}}), frame, None)
    assert schema.rule("defaulted").min_distinct == 2
    gx_report, _ = both_engines(frame, schema, "one_class")
    expected = "1 distinct value, fewer than 2: a classification target needs at least two classes"
    assert failures_by_rule(gx_report) == {("expect_column_unique_value_count_to_be_between", "defaulted"): (None, expected)}
    assert gx_report.summary_lines() == [f"expect_column_unique_value_count_to_be_between on defaulted: {expected}"]
    assert run_suite(clean, spec_schema(classification_spec(), clean, None), suite_name="two").success


def test_the_class_rule_is_added_even_without_inference_and_only_for_classification(clean):
    from ml_pipelines.core.validation import spec_schema

    schema = spec_schema(classification_spec(infer=False, columns={"age": {"min": 0}}), clean, None)
    assert schema.rule("defaulted").min_distinct == 2
    regression = classification_spec().model_copy(update={"task": "regression"})
    assert spec_schema(regression, clean, None).rule("defaulted").min_distinct is None
    partitioned = classification_spec().model_copy(update={"source": FileSource(
        kind="csv", path="x.csv", partitions={"start_date": "2026-01-01", "column": "day"})})
    assert spec_schema(partitioned, clean, None).rule("defaulted").min_distinct is None  # counted in features
    # a reference's class rule does not stick to a column that is no longer the target
    assert resolve_schema(SchemaSpec(), clean, reference=schema).rule("defaulted").min_distinct is None


def test_block_refuses_column_level_failures_and_warn_drops_no_row_for_them(clean, schema):
    from ml_pipelines.core.errors import SchemaViolation
    from ml_pipelines.core.validation import keep_valid_rows

    frame = clean.assign(income=np.nan)
    resolved = resolve_schema(SchemaSpec(nullable=["income"]), frame, reference=schema)
    with pytest.raises(SchemaViolation, match=r"expect_column_values_to_not_be_null on income: 100\.0% null"):
        keep_valid_rows(frame, resolved, block=True, pipeline="loans")
    kept, counts = keep_valid_rows(frame, resolved, block=False, pipeline="loans")
    assert len(kept.frame) == ROWS and counts == {}


def test_keep_valid_rows_copies_nothing_when_no_row_fails_and_reindexes_when_rows_drop(clean, schema):
    from ml_pipelines.core.validation import keep_valid_rows

    kept, counts = keep_valid_rows(clean, schema, block=True, pipeline="loans")
    assert kept.frame is clean and kept.dropped_rows == 0 and counts == {}  # no 10M-row copy for nothing
    # a frame with a gappy index still comes back with a fresh 0..n-1 index
    gappy = clean.iloc[::2]
    kept, _ = keep_valid_rows(gappy, schema, block=True, pipeline="loans")
    assert kept.frame is not gappy and kept.frame.index.equals(pd.RangeIndex(len(gappy)))
    pd.testing.assert_frame_equal(kept.frame, gappy.reset_index(drop=True))
    bad = clean.copy()
    bad.loc[[3, 5], "age"] = 150
    kept, counts = keep_valid_rows(bad, schema, block=False, pipeline="loans")
    assert kept.dropped_rows == 2 and len(kept.frame) == ROWS - 2
    assert kept.frame.index.equals(pd.RangeIndex(ROWS - 2)) and 150 not in kept.frame["age"].tolist()
