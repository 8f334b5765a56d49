"""The pipeline spec: the pydantic model of one `defs.yaml` (DESIGN section 3).

Everything here is checked when the spec is loaded, without reading any data:
unknown keys, wrong types, missing required fields, dotted paths outside the
trusted modules or that do not import (dotted.py), estimators that are not
scikit-learn estimator classes, expressions that do not parse or fall outside the
allowed subset (expressions.py), connection URLs with a literal secret
(connections.py), features listed twice, empty ranges and date spans, gate floors
a metric cannot reach, Kubernetes quantities, cron expressions (cron.py), search
grids over MAX_CANDIDATES and names over Dagster's tag limit. Pydantic error
locations name the field path. (The YAML text itself, before it becomes this
model, is checked by core.spec_files: alias bombs, duplicate keys.)
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from ml_pipelines.connections import RefusedValue, literal_connection_problem, redact_url
from ml_pipelines.cron import cron_error
from ml_pipelines.dotted import UntrustedPathError, import_dotted
from ml_pipelines.durations import parse_duration
from ml_pipelines.expressions import check_expression

NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
# Dagster refuses asset tag values over 63 characters, and every asset is tagged pipeline=<name>
# (a longer name would fail the whole code location)
MAX_NAME_LENGTH = 63
# search grids are expanded into candidates, and each is fitted cv_folds times
MAX_GRID_POINTS = 256  # per model
MAX_CANDIDATES = 256  # over all models
# Kubernetes resource quantities: <number><suffix>, the suffix binary (Ki..Ei), decimal (m, k, M..E) or e<exp>
QUANTITY_PATTERN = re.compile(
    r"^(?P<number>[0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+|Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?$"
)
OWNER_PATTERN = r"^(team:[A-Za-z0-9_-]+|[^@\s]+@[^@\s]+\.[^@\s]+)$"

Task = Literal["classification", "regression"]
ColumnType = Literal["float", "int", "category", "str", "bool", "datetime"]

# metric name -> True when larger is better
METRIC_DIRECTIONS: dict[str, bool] = {
    "roc_auc": True,
    "accuracy": True,
    "f1": True,
    "f1_macro": True,
    "log_loss": False,
    "rmse": False,
    "mae": False,
    "r2": True,
}
# metric name -> (lowest, highest) value it can take; a gate floor outside can never be met
METRIC_RANGES: dict[str, tuple[float, float]] = {
    "roc_auc": (0.0, 1.0),
    "accuracy": (0.0, 1.0),
    "f1": (0.0, 1.0),
    "f1_macro": (0.0, 1.0),
    "log_loss": (0.0, math.inf),
    "rmse": (0.0, math.inf),
    "mae": (0.0, math.inf),
    "r2": (-math.inf, 1.0),
}
CLASSIFICATION_METRICS = ("roc_auc", "accuracy", "f1", "f1_macro", "log_loss")
REGRESSION_METRICS = ("rmse", "mae", "r2")


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _import_trusted(path: str, what: str) -> Any:
    """The object at a dotted path; the trust check comes first, so nothing untrusted is imported."""
    try:
        return import_dotted(path)
    except UntrustedPathError as exc:
        raise ValueError(f"{what} {path!r} is not allowed: {exc}") from None
    except (ImportError, AttributeError, ValueError) as exc:
        raise ValueError(f"{what} {path!r} cannot be imported: {exc}") from exc


def _check_function(path: str, what: str) -> str:
    obj = _import_trusted(path, what)
    if isinstance(obj, type) or not callable(obj):
        raise ValueError(f"{what} {path!r} is not a function (it is a {type(obj).__name__})")
    return path


def _check_estimator(path: str) -> str:
    from sklearn.base import BaseEstimator

    obj = _import_trusted(path, "estimator")
    if not (isinstance(obj, type) and issubclass(obj, BaseEstimator) and callable(getattr(obj, "fit", None))):
        raise ValueError(
            f"estimator {path!r} is not a scikit-learn estimator class "
            "(a subclass of sklearn.base.BaseEstimator with a fit method)"
        )
    return path


# ---------------------------------------------------------------- sources


class Partitions(StrictModel):
    type: Literal["daily"] = Field(default="daily", description="Partition period; only daily for now.")
    start_date: date = Field(description="First partition (YYYY-MM-DD).")
    end_date: date | None = Field(
        default=None, description="Last partition (YYYY-MM-DD), not before start_date; left out: up to today."
    )
    column: str = Field(description="Date or datetime column that assigns each row to a partition.")

    @model_validator(mode="after")
    def _end_not_before_start(self) -> Partitions:
        if self.end_date is not None and self.end_date < self.start_date:
            raise ValueError(f"end_date {self.end_date} is before start_date {self.start_date}")
        return self


class _SourceBase(StrictModel):
    partitions: Partitions | None = Field(
        default=None, description="Daily partitions of raw_data and validated_data by a date column; none by default."
    )


class SyntheticSource(_SourceBase):
    kind: Literal["synthetic"] = Field(description="Data made by a generator function.")
    generator: str = Field(description="Dotted path to a function (**params) -> DataFrame.")
    params: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments of the generator.")

    @field_validator("generator")
    @classmethod
    def _generator_is_trusted(cls, value: str) -> str:
        return _check_function(value, "generator")


class FileSource(_SourceBase):
    kind: Literal["csv", "parquet"] = Field(description="File format: csv or parquet.")
    path: str = Field(
        description="Local path, glob, or s3:// URL; a relative path starts at the project root; "
        "${VAR} is expanded at run time."
    )
    read_options: dict[str, Any] = Field(
        default_factory=dict, description='Options passed to the pandas reader, e.g. {sep: ";"}.'
    )


class SqlSource(_SourceBase):
    kind: Literal["sql"] = Field(description="Rows returned by a SQL query.")
    query: str = Field(description="The SQL query that returns the training data.")
    connection: str = Field(description='"{{ env.VAR }}" resolved at run time, or an SQLAlchemy URL without secrets.')

    @model_validator(mode="before")
    @classmethod
    def _redact_refused_connection(cls, data: Any) -> Any:
        # Dagster prints every error's input value, so a literal URL with a secret is swapped
        # for its redacted form before `_connection_is_usable` refuses it
        value = data.get("connection") if isinstance(data, dict) else None
        problem = literal_connection_problem(value) if isinstance(value, str) else None
        return {**data, "connection": RefusedValue(redact_url(value), problem)} if problem else data

    @field_validator("connection", mode="before")
    @classmethod
    def _connection_is_usable(cls, value: Any) -> Any:
        if isinstance(value, RefusedValue):
            raise ValueError(value.reason)
        return value


class PredictionLogSource(StrictModel):
    kind: Literal["prediction_log"] = Field(description="The model service's audit trail, one partition per day.")
    start_date: date = Field(default=date(2026, 1, 1), description="First daily partition of the log.")


class ProductionFiles(FileSource):
    id_column: str | None = Field(
        default=None,
        description="Column that identifies each production row; labels join on it (monitoring.labels).",
    )


Source = Annotated[SyntheticSource | FileSource | SqlSource, Field(discriminator="kind")]
ProductionSource = Annotated[ProductionFiles | PredictionLogSource, Field(discriminator="kind")]


# ---------------------------------------------------------------- labels (ground truth arriving later)


class FileLabels(StrictModel):
    kind: Literal["csv", "parquet"] = Field(description="Label files: csv or parquet.")
    path: str = Field(description="Local path, glob, or s3:// URL of label files; ${VAR} is expanded at run time.")
    id_column: str | None = Field(
        default=None, description="Id column in the label files; defaults to production_data.id_column."
    )
    read_options: dict[str, Any] = Field(default_factory=dict, description="Options passed to the pandas reader.")


class SqlLabels(StrictModel):
    kind: Literal["sql"] = Field(description="Labels returned by a SQL query.")
    query: str = Field(description="Returns the id column and the target column (and optionally labelled_at).")
    connection: str = Field(description='SQLAlchemy URL, or "{{ env.VAR }}" resolved at run time.')
    id_column: str | None = Field(default=None, description="Defaults to production_data.id_column.")


class FeedbackLabels(StrictModel):
    kind: Literal["feedback"] = Field(description="What clients POST to the model service's /feedback.")


LabelSource = Annotated[FileLabels | SqlLabels | FeedbackLabels, Field(discriminator="kind")]

# ---------------------------------------------------------------- schema


class ColumnSchema(StrictModel):
    type: ColumnType | None = Field(
        default=None, description="float, int, category, str, bool or datetime; left out: inferred (schema.infer)."
    )
    min: float | None = Field(default=None, description="Smallest allowed value; left out: inferred or none.")
    max: float | None = Field(
        default=None, description="Largest allowed value (not below min); left out: inferred or none."
    )
    values: list[Any] | None = Field(
        default=None, description="The only allowed values (categories, class labels); left out: inferred or any."
    )
    max_null_share: float | None = Field(
        default=None, ge=0, le=1,
        description="Largest share of null values this column may hold (a nullable column); "
        "overrides schema.max_null_share.",
    )

    @model_validator(mode="after")
    def _range_is_ordered(self) -> ColumnSchema:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class RowCount(StrictModel):
    min: int | None = Field(default=None, ge=0, description="Fewest rows the data may have; none by default.")
    max: int | None = Field(
        default=None, ge=0, description="Most rows the data may have (not below min); none by default."
    )

    @model_validator(mode="after")
    def _range_is_ordered(self) -> RowCount:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class SchemaSpec(StrictModel):
    columns: dict[str, ColumnSchema] = Field(
        default_factory=dict, description="Rules per column name; what a column leaves out is inferred (infer)."
    )
    nullable: list[str] | None = Field(
        default=None,
        description="Columns allowed to hold nulls; every other column must be non-null. "
        "Left out: inferred from the reference data.",
    )
    row_count: RowCount | None = Field(default=None, description="Bounds on the number of rows; none by default.")
    max_null_share: float | None = Field(
        default=None, ge=0, le=1,
        description="Largest share of null values any nullable column may hold. Left out: a column "
        "that was mostly present in the reference (null share under 0.5) may not be mostly missing now "
        "(null share over 0.5).",
    )
    infer: bool = Field(
        default=True,
        description="Fill types, ranges and categories that the spec leaves out from the reference data.",
    )
    on_failure: Literal["block", "warn"] = Field(
        default="block",
        description="block: a failed suite blocks everything downstream; warn: it warns and validated_data drops "
        "the failing rows.",
    )


# ---------------------------------------------------------------- features


class DerivedFeature(StrictModel):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="Name of the new column.")
    expr: str | None = Field(
        default=None, description="Arithmetic, comparisons and a few math functions over input columns."
    )
    function: str | None = Field(default=None, description="Dotted path to f(DataFrame) -> Series.")
    inputs: list[str] | None = Field(
        default=None, description="Columns the function reads (required with `function`)."
    )
    type: Literal["numeric", "categorical"] = Field(
        default="numeric", description="How the model treats the column: numeric (default) or categorical."
    )

    @field_validator("expr")
    @classmethod
    def _expr_is_allowed(cls, value: str | None) -> str | None:
        if value is not None:
            check_expression(value)
        return value

    @field_validator("function")
    @classmethod
    def _function_is_trusted(cls, value: str | None) -> str | None:
        return None if value is None else _check_function(value, "function")

    @model_validator(mode="after")
    def _one_definition(self) -> DerivedFeature:
        if (self.expr is None) == (self.function is None):
            raise ValueError("give exactly one of `expr` or `function`")
        if self.function is not None and not self.inputs:
            raise ValueError("`inputs` is required with `function`")
        return self


class SplitSpec(StrictModel):
    test_size: float = Field(
        default=0.2, gt=0, lt=1, description="Share of rows held out for evaluation (default 0.2)."
    )
    by: Literal["random", "time"] = Field(
        default="random",
        description="random (stratified for classification; the default) or time (the newest rows by `column`).",
    )
    column: str | None = Field(default=None, description="Datetime column ordering the rows of a time split.")
    seed: int = Field(default=7, description="Seed of a random split (default 7).")

    @model_validator(mode="after")
    def _time_needs_column(self) -> SplitSpec:
        if self.by == "time" and not self.column:
            raise ValueError("split by time needs `column`")
        return self


class FeaturesSpec(StrictModel):
    numeric: list[str] | None = Field(
        default=None, description="Numeric feature columns; with both lists left out, every non-target column "
        "is a feature, typed by its dtype.",
    )
    categorical: list[str] | None = Field(default=None, description="Categorical feature columns (one-hot encoded).")
    derived: list[DerivedFeature] = Field(
        default_factory=list, description="Columns computed from others: {name, expr} or {name, function, inputs}."
    )
    split: SplitSpec = Field(
        default_factory=SplitSpec, description="The holdout split; default {test_size: 0.2, by: random, seed: 7}."
    )

    @model_validator(mode="after")
    def _no_duplicates(self) -> FeaturesSpec:
        seen: dict[str, str] = {}
        for group in ("numeric", "categorical", "derived"):
            values = getattr(self, group) or []
            names = [d.name for d in values] if group == "derived" else values
            for name in names:
                if name in seen:
                    where = f"in `{group}`" if seen[name] == group else f"in `{seen[name]}` and in `{group}`"
                    raise ValueError(f"feature {name!r} is listed twice ({where})")
                seen[name] = group
        return self

    @model_validator(mode="after")
    def _some_feature(self) -> FeaturesSpec:
        listed = self.numeric is not None or self.categorical is not None
        if listed and not (self.numeric or self.categorical or self.derived):
            raise ValueError(
                "`numeric` and `categorical` list no column and nothing is `derived`, so the model would "
                "have no features; list some, or leave both out to use every column"
            )
        return self


# ---------------------------------------------------------------- models


class _ModelBase(StrictModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$", description="Candidate name, unique within the spec.")
    search: dict[str, list[Any]] = Field(
        default_factory=dict, description="Grid of parameters tried during selection."
    )

    @field_validator("search")
    @classmethod
    def _non_empty_grid(cls, value: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, options in value.items():
            if not options:
                raise ValueError(f"search.{key} is an empty list")
        return value

    @field_validator("search")
    @classmethod
    def _bounded_grid(cls, value: dict[str, list[Any]]) -> dict[str, list[Any]]:
        points = math.prod(len(options) for options in value.values())
        if points > MAX_GRID_POINTS:
            sizes = " x ".join(f"{len(options)} {key}" for key, options in value.items())
            raise ValueError(f"the grid has {points} points ({sizes}); at most {MAX_GRID_POINTS} per model")
        return value

    @property
    def grid_points(self) -> int:
        return math.prod(len(options) for options in self.search.values())


class SklearnModel(_ModelBase):
    framework: Literal["sklearn"] = Field(default="sklearn", description="scikit-learn (the default).")
    estimator: str = Field(description="Dotted path to a scikit-learn estimator class (a BaseEstimator).")
    params: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments of the estimator.")

    @field_validator("estimator")
    @classmethod
    def _estimator_is_trusted(cls, value: str) -> str:
        return _check_estimator(value)


class TorchModel(_ModelBase):
    framework: Literal["torch"] = Field(description="A PyTorch tabular MLP.")
    hidden_layers: list[int] = Field(
        default_factory=lambda: [64, 32], description="Units per hidden layer (default [64, 32])."
    )
    epochs: int = Field(default=20, ge=1, description="Most passes over the training rows (default 20).")
    batch_size: int = Field(default=256, ge=1, description="Rows per gradient step (default 256).")
    learning_rate: float = Field(default=1e-3, gt=0, description="Adam learning rate (default 0.001).")
    dropout: float = Field(default=0.0, ge=0, lt=1, description="Dropout after each hidden layer (default 0).")
    weight_decay: float = Field(default=0.0, ge=0, description="L2 penalty (default 0).")
    early_stopping_patience: int | None = Field(
        default=5, ge=1, description="Epochs without improvement on the validation split before stopping (default 5)."
    )
    validation_fraction: float = Field(
        default=0.1, gt=0, lt=0.5, description="Share of training rows for early stopping (default 0.1)."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="auto (cuda when available; the default), cpu or cuda."
    )
    seed: int = Field(default=0, description="Seed of the weights and batches (default 0).")


def _framework_of(value: Any) -> str:
    if isinstance(value, dict):
        return value.get("framework", "sklearn")
    return getattr(value, "framework", "sklearn")


ModelSpec = Annotated[
    Annotated[SklearnModel, Tag("sklearn")] | Annotated[TorchModel, Tag("torch")],
    Discriminator(_framework_of),
]

# ---------------------------------------------------------------- selection, evaluation


class SelectionSpec(StrictModel):
    metric: str | None = Field(
        default=None, description="Cross-validation metric; defaults to roc_auc or rmse by task."
    )
    cv_folds: int = Field(default=5, ge=2, description="k of the k-fold cross-validation (default 5).")
    max_latency_ms: float | None = Field(
        default=None, gt=0, description="Most per-row inference latency in milliseconds; none by default."
    )
    max_size_mb: float | None = Field(default=None, gt=0, description="Largest model size in MB; none by default.")
    sample_rows: int | None = Field(
        default=100_000, ge=100,
        description="Cross-validation runs on a sample of at most this many training rows (stratified by class "
        "for classification), so its cost stops growing with the data; the winner is then refit on every "
        "training row. null: cross-validate on every row.",
    )


class GateSpec(StrictModel):
    metric: str | None = Field(default=None, description="Metric the gate compares; defaults to selection.metric.")
    min: float | None = Field(
        default=None, description="Floor of the metric (a ceiling for errors) a model must meet; none by default."
    )
    max_regression: float = Field(
        default=0.0, ge=0, description="Largest allowed loss against the champion (default 0)."
    )
    confidence: float = Field(
        default=0.95, ge=0.5, lt=1,
        description="Paired bootstrap over the holdout rows: the candidate becomes champion only when, at this "
        "confidence, it is not worse than the champion by more than max_regression.",
    )


class EvaluationSpec(StrictModel):
    metrics: list[str] | None = Field(default=None, description="Holdout metrics; default: all of the task's.")
    gate: GateSpec = Field(default_factory=GateSpec, description="The promotion gate against the champion.")
    slices: list[str] = Field(default_factory=list, description="Columns to compute per-value metrics on.")
    bootstrap_samples: int = Field(
        default=200, ge=0, description="Bootstrap resamples for intervals and the paired gate (default 200)."
    )


class ServingSpec(StrictModel):
    batchable: bool = Field(default=True, description="BentoML adaptive batching (default on).")
    max_batch_size: int = Field(default=64, ge=1, description="Most rows in one adaptive batch (default 64).")
    max_latency_ms: int = Field(
        default=10_000, ge=1,
        description="BentoML's batching deadline: a row that would wait longer for its batch is shed with a 503.",
    )
    max_records: int = Field(default=1000, ge=1, description="Most records one request may carry.")
    max_body_bytes: int = Field(
        default=1_048_576, ge=1024,
        description="Largest request body in bytes; a larger one is refused with a 413 before it is parsed.",
    )
    max_string_length: int = Field(
        default=1000, ge=1,
        description="Longest string one field may hold; a longer one is refused with a 400 naming the field.",
    )
    shadow: bool = Field(
        default=False,
        description="Also score the challenger on every request: its prediction is kept in the audit trail with "
        "the same request id, never returned to the caller.",
    )


# ---------------------------------------------------------------- monitoring


class DriftSpec(StrictModel):
    method: Literal["auto", "psi", "ks", "chi2", "jensenshannon", "wasserstein"] = Field(
        default="auto", description="Drift statistic; auto picks one per column like Evidently's defaults."
    )
    threshold: float | None = Field(
        default=None, gt=0, description="A column drifts past this value of the statistic; default: the method's own."
    )
    share: float = Field(
        default=0.5, gt=0, le=1, description="A batch drifts when at least this share of features drift (default 0.5)."
    )


def _check_cron(value: str | None) -> str | None:
    error = cron_error(value) if value is not None else None
    if error:
        raise ValueError(f"{value!r} is not a cron expression: {error}")
    return value


class WindowSpec(StrictModel):
    batches: int = Field(ge=1, description="The newest N labelled production batches join the training data.")


class RetrainSpec(StrictModel):
    on_drift: bool = Field(default=True, description="Retrain when a batch drifts (default on).")
    on_performance: bool = Field(default=True, description="Retrain when performance_holds fails (needs labels).")
    cooldown_hours: float = Field(default=6, ge=0, description="Fewest hours between two sensor retrains (default 6).")
    cron: str | None = Field(default=None, description="Cron schedule of a retrain run (5 fields or @daily...).")
    window: WindowSpec | None = Field(
        default=None, description="Labelled production batches that join the source data when retraining."
    )

    @field_validator("cron")
    @classmethod
    def _cron_parses(cls, value: str | None) -> str | None:
        return _check_cron(value)


class PerformanceSpec(StrictModel):
    metric: str | None = Field(default=None, description="Defaults to the gate's metric.")
    max_drop: float = Field(
        default=0.05, ge=0, description="Largest allowed drop against the version's own holdout value."
    )
    min_rows: int = Field(default=200, ge=1, description="Labelled rows needed before the check can fail.")


class FreshnessSpec(StrictModel):
    production_data: str | None = Field(
        default=None,
        description="Longest time without a new production batch (e.g. 24h) before the freshness check on "
        "production_data fails: the pipeline stopped receiving data.",
    )
    model: str | None = Field(
        default=None,
        description="Longest time since model_package was last materialized (e.g. 30d) before its freshness "
        "check fails: the model is too old.",
    )

    @field_validator("production_data", "model")
    @classmethod
    def _duration_parses(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value


class MonitoringSpec(StrictModel):
    production_data: ProductionSource | None = Field(
        default=None,
        description="Arriving production batches (csv/parquet files, one partition per file) or the prediction "
        "log; monitoring is off without it.",
    )
    labels: LabelSource | None = Field(default=None, description="Ground truth for production rows, by id.")
    performance: PerformanceSpec = Field(
        default_factory=PerformanceSpec, description="When production performance counts as dropped."
    )
    drift: DriftSpec = Field(default_factory=DriftSpec, description="How drift is measured and when a batch drifts.")
    check_cron: str | None = Field(default=None, description="Cron schedule of the drift check (5 fields or @hourly...).")
    retrain: RetrainSpec = Field(default_factory=RetrainSpec, description="What requests a retrain, and how often.")
    freshness: FreshnessSpec = Field(
        default_factory=FreshnessSpec,
        description="Dagster freshness checks: how old production_data and model_package may get (24h, 30d).",
    )
    sensors_enabled: bool = Field(default=True, description="Start the sensors and schedules on (default on).")
    sensor_interval_seconds: int = Field(
        default=15, ge=1, le=86_400,
        description="How often each sensor looks for new files, labels and reports (default 15 s).",
    )

    @field_validator("check_cron")
    @classmethod
    def _cron_parses(cls, value: str | None) -> str | None:
        return _check_cron(value)

    @model_validator(mode="after")
    def _labels_join_production_rows(self) -> MonitoringSpec:
        if self.labels is not None:
            if self.production_data is None:
                raise ValueError("labels: ground truth joins production rows; set production_data too")
            if isinstance(self.labels, FeedbackLabels) and not isinstance(self.production_data, PredictionLogSource):
                raise ValueError("labels: kind feedback labels the served predictions; production_data must be "
                                 "kind prediction_log")
            if not isinstance(self.labels, FeedbackLabels) and self.production_id_columns() is None:
                raise ValueError("production_data.id_column: labels join production rows by id; name the id column")
        if self.freshness.production_data is not None and self.production_data is None:
            raise ValueError("freshness.production_data: there is no production data to watch; set production_data")
        if self.retrain.window is not None and self.labels is None:
            raise ValueError("retrain.window: only labelled production batches can join the training data; "
                             "set monitoring.labels")
        return self

    def production_id_columns(self) -> list[str] | None:
        """The id of a production row: its id column, or (prediction log) the request id and record index."""
        if isinstance(self.production_data, PredictionLogSource):
            return ["request_id", "index"]
        if self.production_data is not None and self.production_data.id_column:
            return [self.production_data.id_column]
        return None

    def label_id_columns(self) -> list[str] | None:
        """The same id in the label data (files and SQL may name it differently)."""
        production = self.production_id_columns()
        if self.labels is None or production is None:
            return None
        if isinstance(self.labels, FeedbackLabels) or not self.labels.id_column:
            return production
        return [self.labels.id_column, *production[1:]]


# ---------------------------------------------------------------- resources


class StageResources(StrictModel):
    cpu: str | None = Field(default=None, description='Kubernetes CPU quantity: "2", "500m", 1.5.')
    memory: str | None = Field(default=None, description='Kubernetes memory quantity: "4Gi", "512Mi", "1e9".')
    gpu: int = Field(default=0, ge=0, description="GPUs for the step pod (default 0).")
    max_runtime: str | None = Field(
        default=None,
        description="Longest time the stage may run (e.g. 2h). The pipeline's jobs carry the sum over their "
        "stages as Dagster's dagster/max_runtime run tag; run monitoring ends a run that passes it.",
    )
    idle_timeout: str | None = Field(
        default=None,
        description="End the step when its process (with its children) stays below 5% of one CPU core (and, "
        "with gpu > 0, below 5% GPU utilisation) for this long, e.g. 15m; the run fails naming the step.",
    )

    @field_validator("max_runtime", "idle_timeout")
    @classmethod
    def _duration_parses(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    def seconds(self, field: Literal["max_runtime", "idle_timeout"]) -> int | None:
        """max_runtime or idle_timeout in whole seconds; None when unset."""
        value = getattr(self, field)
        return int(parse_duration(value).total_seconds()) if value is not None else None

    @field_validator("cpu", "memory", mode="before")
    @classmethod
    def _kubernetes_quantity(cls, value: Any) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)  # `cpu: 2` in YAML is a number; Kubernetes accepts it
        if isinstance(value, str):
            match = QUANTITY_PATTERN.match(value)
            if not match:
                raise ValueError(f"{value!r} is not a Kubernetes quantity (like 2, 500m, 4Gi, 512Mi)")
            if float(match.group("number")) <= 0:
                raise ValueError(f"{value!r} must be more than zero")
        return value


# ---------------------------------------------------------------- registry


class RetentionSpec(StrictModel):
    keep_versions: int = Field(
        default=20, ge=1,
        description="`ml-pipelines registry gc` keeps the snapshots and artifacts of this many newest versions "
        "(default 20); older ones lose them, their records stay. Champions, challengers and any version an "
        "alias ever pointed at are always kept, and so is training data a kept version shares.",
    )


class RegistrySpec(StrictModel):
    retention: RetentionSpec = Field(
        default_factory=RetentionSpec,
        description="What `ml-pipelines registry gc` keeps: {keep_versions: 20} by default.",
    )


# ---------------------------------------------------------------- the spec


class PipelineSpec(StrictModel):
    name: str = Field(
        pattern=NAME_PATTERN, max_length=MAX_NAME_LENGTH,
        description=f"Asset key prefix and group; at most {MAX_NAME_LENGTH} characters (Dagster's limit "
        "for tag values: every asset is tagged pipeline=<name>).",
    )
    description: str = Field(default="", description="Shown on every asset.")
    owners: list[Annotated[str, Field(pattern=OWNER_PATTERN)]] = Field(
        default_factory=list, description="Dagster owners, team:<name> or an email; default team:ml-platform."
    )
    task: Task = Field(description="classification or regression.")
    target: str = Field(description="The column to predict; string class labels work.")
    source: Source = Field(description="The training data: synthetic, csv, parquet or sql (kind).")
    data_schema: SchemaSpec = Field(
        default_factory=SchemaSpec, alias="schema",
        description="The Great Expectations suite's rules; what it leaves out is inferred from the reference data.",
    )
    features: FeaturesSpec = Field(
        default_factory=FeaturesSpec, description="Feature columns, derived columns and the holdout split."
    )
    models: list[ModelSpec] = Field(
        min_length=1, description="Candidate models (sklearn or torch); cross-validation selects the best."
    )
    selection: SelectionSpec = Field(
        default_factory=SelectionSpec,
        description="How a candidate is selected: metric, folds, latency and size limits.",
    )
    evaluation: EvaluationSpec = Field(
        default_factory=EvaluationSpec, description="Holdout metrics, slices and the promotion gate."
    )
    serving: ServingSpec = Field(
        default_factory=ServingSpec, description="The BentoML service: batching, request limits, shadow scoring."
    )
    monitoring: MonitoringSpec = Field(
        default_factory=MonitoringSpec,
        description="Production data, drift, ground truth and retraining; off by default.",
    )
    resources: dict[Literal["ingest", "validate", "features", "train", "evaluate", "package"], StageResources] = (
        Field(default_factory=dict, description="Per stage: Kubernetes step-pod resources, the run-time limit and "
              "the idle timeout; none by default.")
    )
    registry: RegistrySpec = Field(
        default_factory=RegistrySpec,
        description="The model registry: how many versions keep their data snapshots and artifacts (retention).",
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _consistent(self) -> PipelineSpec:
        names = [m.name for m in self.models]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"models: candidate name {duplicated[0]!r} is used twice")
        if self.monitoring.retrain.window is not None and self.source.partitions is not None:
            raise ValueError("monitoring.retrain.window: not supported with a partitioned source, which already "
                             "trains on every validated partition; land production batches as partitions instead")
        feature_names = self.features.numeric or []
        feature_names = [*feature_names, *(self.features.categorical or [])]
        feature_names += [d.name for d in self.features.derived]
        if self.target in feature_names:
            raise ValueError(f"features: the target {self.target!r} cannot also be a feature")
        allowed = CLASSIFICATION_METRICS if self.task == "classification" else REGRESSION_METRICS
        for field, metric in (
            ("selection.metric", self.selection.metric),
            ("evaluation.gate.metric", self.evaluation.gate.metric),
            *((f"evaluation.metrics[{i}]", m) for i, m in enumerate(self.evaluation.metrics or [])),
            ("monitoring.performance.metric", self.monitoring.performance.metric),
        ):
            if metric is not None and metric not in allowed:
                raise ValueError(
                    f"{field}: {metric!r} is not a {self.task} metric; choose one of {', '.join(allowed)}"
                )
        return self

    @model_validator(mode="after")
    def _gate_floor_reachable(self) -> PipelineSpec:
        floor, metric = self.evaluation.gate.min, self.gate_metric
        if floor is not None and metric in METRIC_RANGES:
            low, high = METRIC_RANGES[metric]
            if not low <= floor <= high:
                raise ValueError(
                    f"evaluation.gate.min: {floor} is outside the range of {metric} "
                    f"[{low:g}, {high:g}], so the gate could never pass"
                )
        return self

    @model_validator(mode="after")
    def _candidates_bounded(self) -> PipelineSpec:
        total = sum(model.grid_points for model in self.models)
        if total > MAX_CANDIDATES:
            raise ValueError(
                f"models: the search grids make {total} candidates; at most {MAX_CANDIDATES} over all models"
            )
        return self

    # ---- derived defaults, so callers never repeat the task switch

    @property
    def selection_metric(self) -> str:
        return self.selection.metric or ("roc_auc" if self.task == "classification" else "rmse")

    @property
    def evaluation_metrics(self) -> list[str]:
        """The listed metrics (or the task's), plus the gate's metric, which the gate must read."""
        if self.evaluation.metrics:
            metrics = list(self.evaluation.metrics)
        else:
            metrics = list(CLASSIFICATION_METRICS if self.task == "classification" else REGRESSION_METRICS)
        if self.gate_metric not in metrics:
            metrics.append(self.gate_metric)
        return metrics

    @property
    def gate_metric(self) -> str:
        return self.evaluation.gate.metric or self.selection_metric

    @property
    def performance_metric(self) -> str:
        return self.monitoring.performance.metric or self.gate_metric

    def spec_hash(self) -> str:
        """Stable hash of the spec's content (key order and formatting do not matter)."""
        # how often the sensors look changes no asset's content: not part of the hash (no retrain)
        content = self.model_dump(mode="json", by_alias=True, exclude={"monitoring": {"sensor_interval_seconds"}})
        payload = json.dumps(content, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def trusted_roots(spec: PipelineSpec) -> tuple[str, ...]:
    """Top-level packages whose types a loaded model may hold: those the spec names."""
    paths = [m.estimator for m in spec.models if isinstance(m, SklearnModel)]
    paths += [d.function for d in spec.features.derived if d.function]
    return tuple(sorted({p.replace(":", ".").split(".", 1)[0] for p in paths}))


def higher_is_better(metric: str) -> bool:
    return METRIC_DIRECTIONS[metric]


def format_validation_error(exc: Exception, file: str | None = None) -> str:
    """One line per problem: `file: field.path: message`."""
    from pydantic import ValidationError

    if not isinstance(exc, ValidationError):
        return f"{file}: {exc}" if file else str(exc)
    lines = []
    for error in exc.errors():
        path = ".".join(str(p) for p in error["loc"] if not re.fullmatch(r"function-after\[.*\]", str(p)))
        message = error["msg"].removeprefix("Value error, ")
        prefix = f"{file}: " if file else ""
        lines.append(f"{prefix}{path or '<root>'}: {message}")
    return "\n".join(lines)
