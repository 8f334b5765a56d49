"""Data validation: the spec's schema resolved into concrete rules, run as a
Great Expectations 1.x suite, plus the same rules as vectorized pandas masks
(used to keep the rows that pass, and as the benchmark baseline).

Besides the spec's types, ranges, categories, nullability and row count, every
resolved schema holds rules that no spec has to ask for:
- numeric columns hold no infinite values (`min: 0` lets +inf through);
- a nullable column holds at most `max_null_share` nulls. Left out of the spec, a
  column that was mostly present in the reference (null share under
  DEFAULT_MAX_NULL_SHARE, recorded as `reference_null_share`) may not be mostly
  missing now (null share over it);
- a classification target has at least two classes.
The last two are table-level: they fail the suite and, with on_failure: block,
keep_valid_rows, but no row is dropped for them with warn.
"""

from __future__ import annotations

import fcntl
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ml_pipelines.core.data_docs import OFFLINE_STYLES, make_site_offline, write_offline_index
from ml_pipelines.core.errors import SchemaViolation
from ml_pipelines.core.retrain_data import ORIGIN_COLUMN
from ml_pipelines.spec import ColumnType, PipelineSpec, SchemaSpec

MAX_INFERRED_CATEGORIES = 50
# inferred numeric bounds are widened by half the observed span: wide enough for a shifted world
# (new production batches reach past the reference's extremes), narrow enough to catch a sentinel
# value or a change of units
RANGE_MARGIN = 0.5
DEFAULT_MAX_NULL_SHARE = 0.5  # "mostly": under it in the reference, a column may not go over it now
MIN_CLASSES = 2
INFINITIES = [float("inf"), float("-inf")]

_FLOAT_DTYPES = ["float64", "float32", "Float64", "Float32"]
_INT_DTYPES = ["int64", "int32", "int16", "int8", "uint64", "uint32", "uint16", "uint8", "Int64", "Int32"]
_GX_TYPE_LISTS: dict[str, list[str]] = {
    # ints read from files that hold nulls arrive as floats, so float/int accept both
    "float": _FLOAT_DTYPES + _INT_DTYPES,
    "int": _INT_DTYPES + _FLOAT_DTYPES,
    "bool": ["bool", "boolean"],
    "datetime": ["datetime64[ns]", "datetime64[us]", "datetime64[ms]", "datetime64[s]"],
}


@dataclass(frozen=True)
class ColumnRule:
    column: str
    type: ColumnType | None = None
    min: float | None = None
    max: float | None = None
    values: tuple[Any, ...] | None = None
    nullable: bool = True
    max_null_share: float | None = None  # a larger share of nulls fails (nullable columns)
    reference_null_share: float | None = None  # the share in the reference data the default limit starts from
    min_distinct: int | None = None  # fewer distinct non-null values fail (a classification target: 2)
    declared: tuple[str, ...] = ()  # which of min, max, values the spec states (the rest was inferred)

    def declared_bound(self, bound: str) -> float | None:
        """min or max when the spec states it; an inferred bound guards training data only."""
        return getattr(self, bound) if bound in self.declared else None

    @property
    def must_be_finite(self) -> bool:
        """Numeric columns (and columns of no declared type) may not hold +-inf."""
        return self.type in (None, "float", "int")


@dataclass(frozen=True)
class ResolvedSchema:
    rules: tuple[ColumnRule, ...]
    row_count_min: int | None = None
    row_count_max: int | None = None

    def rule(self, column: str) -> ColumnRule | None:
        return next((r for r in self.rules if r.column == column), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rules": [{**asdict(r), "values": list(r.values) if r.values is not None else None} for r in self.rules],
            "row_count_min": self.row_count_min,
            "row_count_max": self.row_count_max,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ResolvedSchema:
        rules = tuple(
            ColumnRule(**{**r, "values": tuple(r["values"]) if r.get("values") is not None else None,
                          "declared": tuple(r.get("declared") or ())})
            for r in data["rules"]
        )
        return cls(rules, data.get("row_count_min"), data.get("row_count_max"))


@dataclass(frozen=True)
class ValidatedData:
    """Rows that passed, with the rules they were checked against."""

    frame: pd.DataFrame
    schema: ResolvedSchema
    dropped_rows: int
    partitions: tuple[str, ...] = ()

    @classmethod
    def combine(cls, value: ValidatedData | dict[str, ValidatedData]) -> ValidatedData:
        """One ValidatedData from a partition-keyed dict (what an all-partitions input loads)."""
        if isinstance(value, ValidatedData):
            return value
        if not value:
            raise ValueError("no validated partitions to combine")
        parts = [value[k] for k in sorted(value)]
        frame = pd.concat([p.frame for p in parts], ignore_index=True)
        return cls(frame, parts[-1].schema, sum(p.dropped_rows for p in parts), tuple(sorted(value)))


@dataclass(frozen=True)
class ExpectationFailure:
    expectation: str
    column: str | None
    unexpected_count: int | None
    detail: str = ""


@dataclass(frozen=True)
class ValidationReport:
    success: bool
    evaluated: int
    failures: tuple[ExpectationFailure, ...]
    row_count: int
    docs_path: str | None = None  # the validation's page: a file:// URL in the site
    engine: str = "great_expectations"
    docs_site: str | None = None  # the Data Docs site folder the page is in

    def summary_lines(self) -> list[str]:
        return [
            f"{f.expectation} on {f.column or '<table>'}: "
            + (f"{f.unexpected_count} unexpected" if f.unexpected_count is not None else f.detail)
            + (f" ({f.detail})" if f.unexpected_count is not None and f.detail else "")
            for f in self.failures
        ]


def null_share_detail(nulls: int, rows: int, limit: float) -> str:
    return f"{nulls / rows:.1%} null, over max_null_share {limit:g}" if rows else "no rows"


def distinct_detail(distinct: int, minimum: int) -> str:
    return (
        f"{distinct} distinct value{'' if distinct == 1 else 's'}, fewer than {minimum}: "
        "a classification target needs at least two classes"
    )


INFINITE_DETAIL = "infinite values"
MISSING_DETAIL = "column is missing"


# ---------------------------------------------------------------- inference


def infer_column_type(series: pd.Series) -> ColumnType:
    if pd.api.types.is_bool_dtype(series):
        return "bool"
    if pd.api.types.is_datetime64_any_dtype(series):
        return "datetime"
    if pd.api.types.is_integer_dtype(series):
        return "int"
    if pd.api.types.is_float_dtype(series):
        non_null = series.dropna()
        non_null = non_null[~non_null.isin(INFINITIES)]
        if len(non_null) and np.all(np.mod(non_null.to_numpy(), 1) == 0) and series.isna().any():
            return "int"  # an int column that holds nulls
        return "float"
    if isinstance(series.dtype, pd.CategoricalDtype):
        return "category"
    unique = series.dropna().nunique()
    return "category" if unique <= MAX_INFERRED_CATEGORIES else "str"


def infer_column_rule(series: pd.Series, *, categorical_values: bool = False) -> ColumnRule:
    """Type, nullability, range (widened by RANGE_MARGIN) and categories of one column."""
    kind = infer_column_type(series)
    rule = ColumnRule(
        column=str(series.name), type=kind, nullable=bool(series.isna().any()),
        reference_null_share=_null_share(series),
    )
    non_null = series.dropna()
    if kind in ("float", "int"):
        non_null = non_null[~non_null.isin(INFINITIES)]  # an infinite value fails; it widens no range
    if non_null.empty:
        return rule
    if kind in ("float", "int") and not categorical_values:
        low, high = float(non_null.min()), float(non_null.max())
        margin = (high - low) * RANGE_MARGIN
        low_bound = low - margin if low < 0 or low - margin >= 0 else 0.0
        if kind == "int":
            low_bound, high_bound = math.floor(low_bound), math.ceil(high + margin)
        else:
            high_bound = high + margin
        return replace(rule, min=low_bound, max=high_bound)
    if kind in ("category", "bool") or categorical_values:
        values = sorted(non_null.unique().tolist(), key=str)
        return replace(rule, values=tuple(_plain(v) for v in values))
    return rule


def _null_share(series: pd.Series) -> float:
    return float(series.isna().mean()) if len(series) else 0.0


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def infer_schema(frame: pd.DataFrame, *, categorical_columns: tuple[str, ...] = ()) -> ResolvedSchema:
    rules = tuple(
        infer_column_rule(frame[c], categorical_values=c in categorical_columns) for c in frame.columns
    )
    return ResolvedSchema(rules)


def spec_schema(spec: PipelineSpec, frame: pd.DataFrame, reference: ResolvedSchema | None) -> ResolvedSchema:
    """The spec's schema resolved on this data; a classification target is categorical and
    needs at least MIN_CLASSES classes. A partitioned source is validated one partition at a
    time, and one day may rightly hold one class, so there the classes are counted where the
    partitions are combined (core.features.build_feature_set). The row-origin column of a
    retrain window is bookkeeping, never validated."""
    categorical = (spec.target,) if spec.task == "classification" else ()
    data = frame.drop(columns=[ORIGIN_COLUMN], errors="ignore")
    schema = resolve_schema(spec.data_schema, data, reference=reference, categorical_columns=categorical)
    if spec.task != "classification" or spec.source.partitions is not None:
        return schema
    if schema.rule(spec.target) is None:
        return replace(schema, rules=(*schema.rules, ColumnRule(spec.target, min_distinct=MIN_CLASSES)))
    rules = tuple(replace(r, min_distinct=MIN_CLASSES) if r.column == spec.target else r for r in schema.rules)
    return replace(schema, rules=rules)


def resolve_schema(
    spec: SchemaSpec,
    data: pd.DataFrame,
    *,
    reference: ResolvedSchema | None = None,
    categorical_columns: tuple[str, ...] = (),
) -> ResolvedSchema:
    """Concrete rules: the spec's explicit values win; with `infer`, the gaps are
    filled from the reference (the champion's training data) or, with no champion
    yet, from this data."""
    inferred: dict[str, ColumnRule] = {}
    if spec.infer:
        source = reference or infer_schema(data, categorical_columns=categorical_columns)
        inferred = {r.column: r for r in source.rules}
    columns = list(dict.fromkeys([*spec.columns, *inferred]))
    rules = []
    for column in columns:
        base = replace(inferred.get(column, ColumnRule(column=column)), declared=())
        explicit = spec.columns.get(column)
        if explicit is not None:
            overrides = explicit.model_dump(exclude_none=True)
            declared = tuple(bound for bound in ("min", "max", "values") if bound in overrides)
            if "values" in overrides:
                overrides["values"] = tuple(overrides["values"])
                overrides.setdefault("min", None)
                overrides.setdefault("max", None)
            if "type" in overrides and overrides["type"] != base.type and "values" not in overrides:
                overrides.setdefault("values", None)
                overrides.setdefault("min", None)
                overrides.setdefault("max", None)
            base = replace(base, **overrides, declared=declared)
        if spec.nullable is not None:
            base = replace(base, nullable=column in spec.nullable)
        elif column not in inferred:
            base = replace(base, nullable=False)
        rules.append(_with_null_share(base, spec, reference, data))
    row_count = spec.row_count
    return ResolvedSchema(
        tuple(rules),
        row_count.min if row_count else None,
        row_count.max if row_count else None,
    )


def _with_null_share(
    rule: ColumnRule, spec: SchemaSpec, reference: ResolvedSchema | None, data: pd.DataFrame
) -> ColumnRule:
    """The rule with its reference null share (the reference's, else this data's) and its
    limit: the column's, else the schema's, else DEFAULT_MAX_NULL_SHARE for a column whose
    reference share is under it. Recomputed on every run (min_distinct too: spec_schema sets it)."""
    ref_rule = reference.rule(rule.column) if reference is not None else None
    if ref_rule is not None:
        # a reference recorded before shares were: a non-nullable column held no nulls
        baseline = ref_rule.reference_null_share
        if baseline is None and not ref_rule.nullable:
            baseline = 0.0
    elif rule.column in data.columns:
        baseline = _null_share(data[rule.column])
    else:
        baseline = None
    explicit = spec.columns.get(rule.column)
    limit = explicit.max_null_share if explicit is not None else None
    if limit is None:
        limit = spec.max_null_share
    if limit is None and baseline is not None and baseline < DEFAULT_MAX_NULL_SHARE:
        limit = DEFAULT_MAX_NULL_SHARE
    return replace(
        rule, reference_null_share=baseline, max_null_share=limit if rule.nullable else None, min_distinct=None
    )


# ---------------------------------------------------------------- Great Expectations


def finite_by_rule(rule: ColumnRule) -> bool:
    """+-inf lies outside any two bounds and any set of finite values, so the column's `between`
    or `in set` expectation fails on it: the whole suite needs no separate finite check there.
    That saves GX an `isin` over the column and, when the column holds nulls, a copy of the whole
    frame (bench/validation_throughput.py). The check still runs in the failures pass on a column
    that holds infinities (_infinite_columns), so the report names and counts them as
    check_with_pandas does."""
    if not rule.must_be_finite:
        return False
    bounds = (rule.min, rule.max)
    bounded = all(bound is not None and not _is_infinite(bound) for bound in bounds)  # `max: .inf` lets +inf in
    return bounded or (rule.values is not None and not any(_is_infinite(v) for v in rule.values))


def _is_infinite(value: Any) -> bool:
    return isinstance(value, float) and math.isinf(value)


def finite_expectation(column: str):
    import great_expectations.expectations as gxe

    return gxe.ExpectColumnValuesToNotBeInSet(column=column, value_set=INFINITIES)


def build_suite(schema: ResolvedSchema, name: str):
    import great_expectations as gx
    import great_expectations.expectations as gxe

    expectations: list = []
    if schema.rules:  # one expectation for every column's presence; the failures pass names the missing
        columns = [rule.column for rule in schema.rules]
        expectations.append(gxe.ExpectTableColumnsToMatchSet(column_set=columns, exact_match=False))
    for rule in schema.rules:
        if rule.type in ("category", "str"):
            expectations.append(gxe.ExpectColumnValuesToBeOfType(column=rule.column, type_="str"))
        elif rule.type is not None:
            expectations.append(
                gxe.ExpectColumnValuesToBeInTypeList(column=rule.column, type_list=_GX_TYPE_LISTS[rule.type])
            )
        if not rule.nullable:
            expectations.append(gxe.ExpectColumnValuesToNotBeNull(column=rule.column))
        elif rule.max_null_share is not None and rule.max_null_share < 1:
            expectations.append(gxe.ExpectColumnValuesToNotBeNull(column=rule.column, mostly=1 - rule.max_null_share))
        if rule.must_be_finite and not finite_by_rule(rule):
            expectations.append(finite_expectation(rule.column))
        if rule.min_distinct is not None:
            expectations.append(
                gxe.ExpectColumnUniqueValueCountToBeBetween(column=rule.column, min_value=rule.min_distinct)
            )
        if rule.min is not None or rule.max is not None:
            expectations.append(
                gxe.ExpectColumnValuesToBeBetween(column=rule.column, min_value=rule.min, max_value=rule.max)
            )
        if rule.values is not None:
            expectations.append(gxe.ExpectColumnValuesToBeInSet(column=rule.column, value_set=list(rule.values)))
    if schema.row_count_min is not None or schema.row_count_max is not None:
        expectations.append(
            gxe.ExpectTableRowCountToBeBetween(min_value=schema.row_count_min, max_value=schema.row_count_max)
        )
    # all at once: add_expectation compares each new expectation with every one before it
    # (quadratic, ~0.1 s for 47); the rules already hold one expectation of each kind per column
    return gx.ExpectationSuite(name=name, expectations=expectations)


GX_DATASOURCE = "pipeline"
GX_DATA_ASSET = "raw_data"  # what the Data Docs index shows as the data asset
GX_DOCS_SITE = "local_site"  # a file context's default Data Docs site, under uncommitted/data_docs/
# The whole suite runs with BOOLEAN_ONLY: pass or fail per expectation. BASIC would add, for each
# expectation on a column that holds nulls, one more copy of the whole frame (GX filters the nulls
# out of every column to sample the unexpected values): 5 of the 10 copies on 1M rows with a few
# bad values, a third of GX's time (bench/validation_throughput.py). What failed is validated
# again with BASIC, on its columns only ("<suite>-failures"): unexpected counts, observed values
# and up to 20 sampled unexpected values, for the report and the failures' Data Docs page.
GX_RESULT_FORMAT = {"result_format": "BOOLEAN_ONLY"}
GX_DETAIL_FORMAT = {"result_format": "BASIC"}
FAILURES_SUFFIX = "-failures"  # the suite of what failed, validated again (a dot would make GX nest folders)


def run_suite(
    frame: pd.DataFrame, schema: ResolvedSchema, *, suite_name: str, project_dir: Path | None = None,
    run_name: str | None = None,
) -> ValidationReport:
    """Validate with Great Expectations. With project_dir, in the persistent file context there
    (one per pipeline), so its Data Docs list every validation, named run_name (the Dagster run
    id), with raw_data as the data asset; without, in an ephemeral context and no Data Docs."""
    try:
        if project_dir is None:
            return _validate(_gx_context(None), frame, schema, suite_name, None)
        project_dir.mkdir(parents=True, exist_ok=True)
        with (project_dir / ".ml_pipelines.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two runs of one pipeline must not rewrite its context at once
            return _validate(_gx_context(project_dir), frame, schema, suite_name, run_name)
    finally:
        _release_frame()


def _release_frame() -> None:
    """GX keeps the last context it made as its process-wide "current project", and that context
    keeps the last validated DataFrame in its execution engine's batch cache: the whole frame
    would stay in memory for the rest of the run. Making a new, empty ephemeral context (about
    2 ms; GX has no public call that clears the current project) replaces it."""
    import great_expectations as gx

    gx.get_context(mode="ephemeral")


def _gx_context(project_dir: Path | None):
    import great_expectations as gx

    if project_dir is None:
        context = gx.get_context(mode="ephemeral")
    else:
        context = gx.get_context(mode="file", project_root_dir=str(project_dir))
        styles = Path(context.root_directory, "plugins", "custom_data_docs", "styles")
        styles.mkdir(parents=True, exist_ok=True)  # GX inlines this file into every page: styled offline
        (styles / "data_docs_custom_styles.css").write_text(OFFLINE_STYLES.read_text())
    context.variables.progress_bars = {"globally": False, "metric_calculations": False}
    return context


def _batch_definition(context):
    try:
        source = context.data_sources.get(GX_DATASOURCE)
    except KeyError:
        source = context.data_sources.add_pandas(GX_DATASOURCE)
    try:
        asset = source.get_asset(GX_DATA_ASSET)
    except LookupError:
        asset = source.add_dataframe_asset(GX_DATA_ASSET)
    try:
        return asset.get_batch_definition("batch")
    except KeyError:
        return asset.add_batch_definition_whole_dataframe("batch")


def _validate(context, frame: pd.DataFrame, schema: ResolvedSchema, suite_name: str, run_name: str | None):
    from great_expectations.core.run_identifier import RunIdentifier

    run_id = RunIdentifier(run_name=run_name)
    suite = build_suite(schema, suite_name)
    whole = _run(context, suite, frame, GX_RESULT_FORMAT, run_id)
    failed = [result for result in whole.results if not result.success]
    detailed = None
    if failed:
        failures_suite = _suite_of(failed, suite, suite_name + FAILURES_SUFFIX, _stand_ins(failed, frame, schema))
        detailed = _run(context, failures_suite, _columns_of(failed, frame), GX_DETAIL_FORMAT, run_id)
    docs_path, site = _write_docs(context, [v for v in (whole, detailed) if v is not None], run_id)
    return ValidationReport(
        success=bool(whole.success),
        evaluated=_rules_checked(len(whole.results), schema),
        failures=tuple(_failures(failed, detailed)),
        row_count=len(frame),
        docs_path=docs_path,
        docs_site=str(site) if site else None,
    )


def _run(context, suite, frame: pd.DataFrame, result_format: dict[str, str], run_id):
    """One validation definition's run on frame (its result is stored in a file context)."""
    import great_expectations as gx

    # the definition's add_or_update adds or updates its suite too: a second call would compare
    # the stored suite's expectations with ours once more (quadratic, ~0.08 s for 47)
    definition = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=suite.name, data=_batch_definition(context), suite=suite)
    )
    # the validation definition alone, with no Checkpoint around it: a checkpoint's set-up and
    # freshness checks cost ~0.17 s a run (a third of GX's fixed cost), and its one action here,
    # UpdateDataDocsAction, is the build_data_docs call in _write_docs with the same identifiers
    return definition.run(batch_parameters={"dataframe": frame}, result_format=result_format, run_id=run_id)


def _key(config) -> tuple[str, str]:
    """An expectation's type and arguments, less the batch id GX adds to a result's copy."""
    return config.type, repr(sorted((k, v) for k, v in config.kwargs.items() if k != "batch_id"))


# the whole suite's one expectation for every column's presence (build_suite)
COLUMNS_PRESENT = "expect_table_columns_to_match_set"


def _rules_checked(expectations: int, schema: ResolvedSchema) -> int:
    """The rules the whole suite's expectations checked, counted as check_with_pandas counts
    them: a column's presence and finite values each count once, also where another stood for it."""
    return expectations + max(len(schema.rules) - 1, 0) + sum(finite_by_rule(rule) for rule in schema.rules)


def _stand_ins(failed: list, frame: pd.DataFrame, schema: ResolvedSchema) -> list:
    """The per-column checks that failed expectations of the whole suite stood for, where they
    fail: each missing column's presence, and the finite check on a column holding +-inf. Run in
    the failures pass, they name the column as check_with_pandas does."""
    import great_expectations.expectations as gxe

    checks = []
    if any(result.expectation_config.type == COLUMNS_PRESENT for result in failed):
        checks += [gxe.ExpectColumnToExist(column=r.column) for r in schema.rules if r.column not in frame.columns]
    return checks + [finite_expectation(column) for column in _infinite_columns(failed, frame, schema)]


def _suite_of(failed: list, suite, name: str, stand_ins: list):
    """A suite of copies of the expectations that failed, less the columns' presence, and the
    per-column checks they stood for (_stand_ins)."""
    import copy

    import great_expectations as gx

    keys = {_key(result.expectation_config) for result in failed}
    return gx.ExpectationSuite(name=name, expectations=[
        copy.copy(e) for e in suite.expectations
        if _key(e.configuration) in keys and e.expectation_type != COLUMNS_PRESENT
    ] + stand_ins)


STANDS_FOR_FINITE = ("expect_column_values_to_be_between", "expect_column_values_to_be_in_set")


def _infinite_columns(failed: list, frame: pd.DataFrame, schema: ResolvedSchema) -> list[str]:
    """The columns whose failed `between` or `in set` stood for the finite check and that hold +-inf."""
    columns = []
    for result in failed:
        config = result.expectation_config
        rule = schema.rule(config.kwargs.get("column"))
        if config.type not in STANDS_FOR_FINITE or rule is None or not finite_by_rule(rule):
            continue
        if rule.column in columns or rule.column not in frame.columns:  # a missing column fails on its own
            continue
        if _holds_infinities(frame[rule.column]):
            columns.append(rule.column)
    return columns


def _holds_infinities(series: pd.Series) -> bool:
    if pd.api.types.is_integer_dtype(series) or pd.api.types.is_bool_dtype(series):
        return False  # no integer holds one
    if pd.api.types.is_float_dtype(series):
        return bool(np.isinf(series.to_numpy("float64", na_value=np.nan)).any())  # ~50x faster than isin
    return bool(series.isin(INFINITIES).any())


def _columns_of(failed: list, frame: pd.DataFrame) -> pd.DataFrame:
    """frame's columns the failed expectations name (all rows): a narrower frame to fingerprint
    and filter. A table-level failure alone (the row count) keeps the whole frame."""
    named = {result.expectation_config.kwargs.get("column") for result in failed}
    columns = [column for column in frame.columns if column in named]
    return frame[columns] if columns else frame


def _write_docs(context, validations: list, run_id) -> tuple[str | None, Path | None]:
    """In a file context, the Data Docs pages of these validations (the failures' page last) and
    the offline index; returns the last page's URL and the site. An ephemeral context writes none."""
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    if context.root_directory is None:
        return None, None
    identifiers = []
    for validation in validations:
        suite_id = ExpectationSuiteIdentifier(name=validation.suite_name)
        identifiers += [ValidationResultIdentifier(suite_id, run_id, validation.batch_id), suite_id]
    context.build_data_docs(site_names=[GX_DOCS_SITE], resource_identifiers=identifiers)
    urls = context.get_docs_sites_urls(resource_identifier=identifiers[-2], site_names=[GX_DOCS_SITE])
    site = Path(context.root_directory, "uncommitted", "data_docs", GX_DOCS_SITE)
    make_site_offline(site)  # styled with no internet: no CDN links left (core.data_docs)
    write_offline_index(site)
    return (urls[0]["site_url"] if urls else None), site


def _failures(failed: list, detailed) -> list[ExpectationFailure]:
    """Each failed expectation, with the count, observed value and exception its detailed run gave;
    the missing columns first (in place of the one presence expectation), infinite values last."""
    details = {_key(result.expectation_config): result for result in (detailed.results if detailed else [])}
    keys = {_key(result.expectation_config) for result in failed}
    stood_for = [r for key, r in details.items() if key not in keys and not r.success]
    missing = [r for r in stood_for if r.expectation_config.type == "expect_column_to_exist"]
    infinite = [r for r in stood_for if r.expectation_config.type != "expect_column_to_exist"]
    rest = [r for r in failed if r.expectation_config.type != COLUMNS_PRESENT]
    failures = []
    for item in missing + rest + infinite:
        item = details.get(_key(item.expectation_config), item)
        config = item.expectation_config
        exception = (item.exception_info or {}).get("exception_message")
        detail = exception or _failure_detail(config.type, config.kwargs, item.result)
        failures.append(
            ExpectationFailure(
                expectation=config.type,
                column=config.kwargs.get("column"),
                unexpected_count=item.result.get("unexpected_count"),
                detail=detail,
            )
        )
    return failures


def _observed(result: dict[str, Any]) -> str:
    if "observed_value" in result:
        return f"observed {result['observed_value']!r}"
    return "failed"


def _failure_detail(expectation: str, kwargs: dict[str, Any], result: dict[str, Any]) -> str:
    """What a failure means, worded as check_with_pandas words it."""
    if expectation == "expect_column_values_to_not_be_null" and kwargs.get("mostly", 1) < 1:
        return null_share_detail(result["unexpected_count"], result["element_count"], 1 - kwargs["mostly"])
    if expectation == "expect_column_values_to_not_be_in_set":
        return INFINITE_DETAIL
    if expectation == "expect_column_to_exist":
        return MISSING_DETAIL
    if expectation == "expect_column_unique_value_count_to_be_between":
        return distinct_detail(result["observed_value"], kwargs["min_value"])
    return "" if result.get("unexpected_count") is not None else _observed(result)


# ---------------------------------------------------------------- the same rules in pandas


def _type_ok(series: pd.Series, kind: ColumnType | None) -> bool:
    if kind is None:
        return True
    if kind in ("category", "str"):
        return bool(series.dropna().map(type).eq(str).all()) if series.dtype == object else (
            pd.api.types.is_string_dtype(series)
        )
    return series.dtype.name in _GX_TYPE_LISTS[kind] or (
        kind == "datetime" and pd.api.types.is_datetime64_any_dtype(series)
    )


def row_failures(frame: pd.DataFrame, schema: ResolvedSchema) -> tuple[pd.Series, dict[tuple[str, str], int]]:
    """A mask of rows that break any row-level rule, and the count per (rule, column)."""
    bad = pd.Series(False, index=frame.index)
    counts: dict[tuple[str, str], int] = {}
    for rule in schema.rules:
        if rule.column not in frame.columns:
            continue
        series = frame[rule.column]
        missing = series.isna()
        checks: list[tuple[str, pd.Series]] = []
        if not rule.nullable:
            checks.append(("expect_column_values_to_not_be_null", missing))
        if rule.must_be_finite:
            checks.append(("expect_column_values_to_not_be_in_set", series.isin(INFINITIES)))
        if (rule.min is not None or rule.max is not None) and pd.api.types.is_numeric_dtype(series):
            out = pd.Series(False, index=frame.index)
            if rule.min is not None:
                out |= series < rule.min
            if rule.max is not None:
                out |= series > rule.max
            checks.append(("expect_column_values_to_be_between", out & ~missing))
        if rule.values is not None:
            checks.append(("expect_column_values_to_be_in_set", ~series.isin(list(rule.values)) & ~missing))
        for name, failed in checks:
            count = int(failed.sum())
            if count:
                counts[(name, rule.column)] = count
                bad |= failed
    return bad, counts


def table_failures(frame: pd.DataFrame, schema: ResolvedSchema) -> list[ExpectationFailure]:
    """Column-level rules no single row breaks: the null share and the distinct count."""
    failures = []
    for rule in schema.rules:
        if rule.column not in frame.columns:
            continue
        series = frame[rule.column]
        if rule.nullable and rule.max_null_share is not None and rule.max_null_share < 1:
            nulls = int(series.isna().sum())
            if len(series) and (len(series) - nulls) / len(series) < 1 - rule.max_null_share:
                detail = null_share_detail(nulls, len(series), rule.max_null_share)
                failures.append(ExpectationFailure("expect_column_values_to_not_be_null", rule.column, nulls, detail))
        if rule.min_distinct is not None:
            distinct = int(series.nunique(dropna=True))
            if distinct < rule.min_distinct:
                detail = distinct_detail(distinct, rule.min_distinct)
                failures.append(
                    ExpectationFailure("expect_column_unique_value_count_to_be_between", rule.column, None, detail)
                )
    return failures


def keep_valid_rows(
    frame: pd.DataFrame, schema: ResolvedSchema, *, block: bool, pipeline: str, partitions: tuple[str, ...] = ()
) -> tuple[ValidatedData, dict[tuple[str, str], int]]:
    """The rows that pass every row-level rule, and the rows dropped per (rule, column).
    With block, any failing row or column-level rule is an error naming each rule and column instead."""
    bad, counts = row_failures(frame, schema)
    column_failures = table_failures(frame, schema) if block else []
    if block and (bad.any() or column_failures):
        problems = [f"{rule} on {column}: {n}" for (rule, column), n in counts.items()]
        problems += [f"{f.expectation} on {f.column}: {f.detail}" for f in column_failures]
        raise SchemaViolation(
            f"{pipeline}: {int(bad.sum())} rows break the schema and on_failure is block: " + ", ".join(problems)
        )
    dropped = int(bad.sum())
    if dropped == 0 and frame.index.equals(pd.RangeIndex(len(frame))):
        kept = frame  # nothing to drop: the same rows and index, without a copy of every row
    else:
        kept = frame.loc[~bad].reset_index(drop=True)
    return ValidatedData(kept, schema, dropped, partitions), counts


def check_with_pandas(frame: pd.DataFrame, schema: ResolvedSchema) -> ValidationReport:
    """The suite's rules, vectorized in pandas: the benchmark baseline and a cross-check."""
    failures: list[ExpectationFailure] = []
    evaluated = 0
    for rule in schema.rules:
        evaluated += 1
        if rule.column not in frame.columns:
            failures.append(ExpectationFailure("expect_column_to_exist", rule.column, None, MISSING_DETAIL))
            continue
        if rule.type is not None:
            evaluated += 1
            if not _type_ok(frame[rule.column], rule.type):
                failures.append(
                    ExpectationFailure("expect_column_type", rule.column, None, f"observed {frame[rule.column].dtype}")
                )
        evaluated += (not rule.nullable) + (rule.min is not None or rule.max is not None) + (rule.values is not None)
        evaluated += (rule.nullable and rule.max_null_share is not None and rule.max_null_share < 1)
        evaluated += rule.must_be_finite + (rule.min_distinct is not None)
    _, counts = row_failures(frame, schema)
    failures += [
        ExpectationFailure(name, column, count, INFINITE_DETAIL if name == "expect_column_values_to_not_be_in_set" else "")
        for (name, column), count in counts.items()
    ]
    failures += table_failures(frame, schema)
    if schema.row_count_min is not None or schema.row_count_max is not None:
        evaluated += 1
        too_few = schema.row_count_min is not None and len(frame) < schema.row_count_min
        too_many = schema.row_count_max is not None and len(frame) > schema.row_count_max
        if too_few or too_many:
            failures.append(
                ExpectationFailure("expect_table_row_count_to_be_between", None, None, f"observed {len(frame)}")
            )
    return ValidationReport(not failures, evaluated, tuple(failures), len(frame), engine="pandas")

