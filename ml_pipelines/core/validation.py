"""Data validation: the spec's schema resolved into concrete rules, run as a
Great Expectations 1.x suite, plus the same rules as vectorized pandas masks
(used to keep the rows that pass, and as the benchmark baseline).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ml_pipelines.core.errors import SchemaViolation
from ml_pipelines.core.retrain_data import ORIGIN_COLUMN
from ml_pipelines.spec import ColumnType, PipelineSpec, SchemaSpec

MAX_INFERRED_CATEGORIES = 50
# inferred numeric bounds are widened by half the observed span: wide enough for a shifted world
# (new production batches reach past the reference's extremes), narrow enough to catch a sentinel
# value or a change of units
RANGE_MARGIN = 0.5

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
            ColumnRule(**{**r, "values": tuple(r["values"]) if r.get("values") is not None else None})
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
    docs_path: str | None = None
    engine: str = "great_expectations"

    def summary_lines(self) -> list[str]:
        return [
            f"{f.expectation} on {f.column or '<table>'}: "
            + (f"{f.unexpected_count} unexpected" if f.unexpected_count is not None else f.detail)
            for f in self.failures
        ]


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
    rule = ColumnRule(column=str(series.name), type=kind, nullable=bool(series.isna().any()))
    non_null = series.dropna()
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


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def infer_schema(frame: pd.DataFrame, *, categorical_columns: tuple[str, ...] = ()) -> ResolvedSchema:
    rules = tuple(
        infer_column_rule(frame[c], categorical_values=c in categorical_columns) for c in frame.columns
    )
    return ResolvedSchema(rules)


def spec_schema(spec: PipelineSpec, frame: pd.DataFrame, reference: ResolvedSchema | None) -> ResolvedSchema:
    """The spec's schema resolved on this data; a classification target is categorical. The
    row-origin column of a retrain window is bookkeeping, never validated."""
    categorical = (spec.target,) if spec.task == "classification" else ()
    data = frame.drop(columns=[ORIGIN_COLUMN], errors="ignore")
    return resolve_schema(spec.data_schema, data, reference=reference, categorical_columns=categorical)


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
        base = inferred.get(column, ColumnRule(column=column))
        explicit = spec.columns.get(column)
        if explicit is not None:
            overrides = explicit.model_dump(exclude_none=True)
            if "values" in overrides:
                overrides["values"] = tuple(overrides["values"])
                overrides.setdefault("min", None)
                overrides.setdefault("max", None)
            if "type" in overrides and overrides["type"] != base.type and "values" not in overrides:
                overrides.setdefault("values", None)
                overrides.setdefault("min", None)
                overrides.setdefault("max", None)
            base = replace(base, **overrides)
        if spec.nullable is not None:
            base = replace(base, nullable=column in spec.nullable)
        elif column not in inferred:
            base = replace(base, nullable=False)
        rules.append(base)
    row_count = spec.row_count
    return ResolvedSchema(
        tuple(rules),
        row_count.min if row_count else None,
        row_count.max if row_count else None,
    )


# ---------------------------------------------------------------- Great Expectations


def build_suite(schema: ResolvedSchema, name: str):
    import great_expectations as gx
    import great_expectations.expectations as gxe

    suite = gx.ExpectationSuite(name=name)
    for rule in schema.rules:
        suite.add_expectation(gxe.ExpectColumnToExist(column=rule.column))
        if rule.type in ("category", "str"):
            suite.add_expectation(gxe.ExpectColumnValuesToBeOfType(column=rule.column, type_="str"))
        elif rule.type is not None:
            suite.add_expectation(
                gxe.ExpectColumnValuesToBeInTypeList(column=rule.column, type_list=_GX_TYPE_LISTS[rule.type])
            )
        if not rule.nullable:
            suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column=rule.column))
        if rule.min is not None or rule.max is not None:
            suite.add_expectation(
                gxe.ExpectColumnValuesToBeBetween(column=rule.column, min_value=rule.min, max_value=rule.max)
            )
        if rule.values is not None:
            suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column=rule.column, value_set=list(rule.values)))
    if schema.row_count_min is not None or schema.row_count_max is not None:
        suite.add_expectation(
            gxe.ExpectTableRowCountToBeBetween(min_value=schema.row_count_min, max_value=schema.row_count_max)
        )
    return suite


def run_suite(
    frame: pd.DataFrame, schema: ResolvedSchema, *, suite_name: str, docs_dir: Path | None = None
) -> ValidationReport:
    """Validate with Great Expectations; write Data Docs HTML under docs_dir when given."""
    import great_expectations as gx

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False, "metric_calculations": False}
    actions = []
    if docs_dir is not None:
        context.add_data_docs_site(
            site_name="ml_pipelines",
            site_config={
                "class_name": "SiteBuilder",
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
        actions.append(gx.checkpoint.UpdateDataDocsAction(name="data_docs", site_names=["ml_pipelines"]))
    batch_definition = (
        context.data_sources.add_pandas("pipeline")
        .add_dataframe_asset(suite_name)
        .add_batch_definition_whole_dataframe("batch")
    )
    suite = context.suites.add(build_suite(schema, suite_name))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=suite_name, data=batch_definition, suite=suite)
    )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=suite_name,
            validation_definitions=[definition],
            actions=actions,
            result_format={"result_format": "SUMMARY"},
        )
    )
    result = checkpoint.run(batch_parameters={"dataframe": frame})
    (identifier, validation), *_ = result.run_results.items()
    failures = []
    for item in validation.results:
        if item.success:
            continue
        config = item.expectation_config
        exception = (item.exception_info or {}).get("exception_message")
        detail = exception or _observed(item.result)
        failures.append(
            ExpectationFailure(
                expectation=config.type,
                column=config.kwargs.get("column"),
                unexpected_count=item.result.get("unexpected_count"),
                detail=detail,
            )
        )
    docs_path = None
    if docs_dir is not None:
        urls = context.get_docs_sites_urls(resource_identifier=identifier, site_names=["ml_pipelines"])
        docs_path = urls[0]["site_url"] if urls else None
    return ValidationReport(
        success=bool(validation.success),
        evaluated=len(validation.results),
        failures=tuple(failures),
        row_count=len(frame),
        docs_path=docs_path,
    )


def _observed(result: dict[str, Any]) -> str:
    if "observed_value" in result:
        return f"observed {result['observed_value']!r}"
    return "failed"


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


def keep_valid_rows(
    frame: pd.DataFrame, schema: ResolvedSchema, *, block: bool, pipeline: str, partitions: tuple[str, ...] = ()
) -> tuple[ValidatedData, dict[tuple[str, str], int]]:
    """The rows that pass every row-level rule, and the rows dropped per (rule, column).
    With block, any failing row is an error naming each rule and column instead."""
    bad, counts = row_failures(frame, schema)
    if block and bad.any():
        raise SchemaViolation(
            f"{pipeline}: {int(bad.sum())} rows break the schema and on_failure is block: "
            + ", ".join(f"{rule} on {column}: {n}" for (rule, column), n in counts.items())
        )
    kept = frame.loc[~bad].reset_index(drop=True)
    return ValidatedData(kept, schema, int(bad.sum()), partitions), counts


def check_with_pandas(frame: pd.DataFrame, schema: ResolvedSchema) -> ValidationReport:
    """The suite's rules, vectorized in pandas: the benchmark baseline and a cross-check."""
    failures: list[ExpectationFailure] = []
    evaluated = 0
    for rule in schema.rules:
        evaluated += 1
        if rule.column not in frame.columns:
            failures.append(ExpectationFailure("expect_column_to_exist", rule.column, None, "column is missing"))
            continue
        if rule.type is not None:
            evaluated += 1
            if not _type_ok(frame[rule.column], rule.type):
                failures.append(
                    ExpectationFailure("expect_column_type", rule.column, None, f"observed {frame[rule.column].dtype}")
                )
        evaluated += (not rule.nullable) + (rule.min is not None or rule.max is not None) + (rule.values is not None)
    _, counts = row_failures(frame, schema)
    failures += [ExpectationFailure(name, column, count) for (name, column), count in counts.items()]
    if schema.row_count_min is not None or schema.row_count_max is not None:
        evaluated += 1
        too_few = schema.row_count_min is not None and len(frame) < schema.row_count_min
        too_many = schema.row_count_max is not None and len(frame) > schema.row_count_max
        if too_few or too_many:
            failures.append(
                ExpectationFailure("expect_table_row_count_to_be_between", None, None, f"observed {len(frame)}")
            )
    return ValidationReport(not failures, evaluated, tuple(failures), len(frame), engine="pandas")

