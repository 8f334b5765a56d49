"""The pipeline spec: the pydantic model of one `defs.yaml` (DESIGN section 3).

Everything here is checked when the spec is loaded, without reading any data:
unknown keys, wrong types, missing required fields, dotted paths that do not
import, and features listed twice. Pydantic error locations name the field path.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from ml_pipelines.dotted import import_dotted

NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
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
CLASSIFICATION_METRICS = ("roc_auc", "accuracy", "f1", "f1_macro", "log_loss")
REGRESSION_METRICS = ("rmse", "mae", "r2")


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_importable(path: str, what: str) -> str:
    try:
        import_dotted(path)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ValueError(f"{what} {path!r} cannot be imported: {exc}") from exc
    return path


# ---------------------------------------------------------------- sources


class Partitions(StrictModel):
    type: Literal["daily"] = "daily"
    start_date: date
    end_date: date | None = None
    column: str = Field(description="Date or datetime column that assigns each row to a partition.")


class _SourceBase(StrictModel):
    partitions: Partitions | None = None


class SyntheticSource(_SourceBase):
    kind: Literal["synthetic"]
    generator: str = Field(description="Dotted path to a function (**params) -> DataFrame.")
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("generator")
    @classmethod
    def _generator_imports(cls, value: str) -> str:
        return _check_importable(value, "generator")


class FileSource(_SourceBase):
    kind: Literal["csv", "parquet"]
    path: str = Field(description="Local path, glob, or s3:// URL; ${VAR} is expanded at run time.")
    read_options: dict[str, Any] = Field(default_factory=dict)


class SqlSource(_SourceBase):
    kind: Literal["sql"]
    query: str
    connection: str = Field(description='SQLAlchemy URL, or "{{ env.VAR }}" resolved at run time.')


class PredictionLogSource(StrictModel):
    kind: Literal["prediction_log"]
    start_date: date = Field(default=date(2026, 1, 1), description="First daily partition of the log.")


Source = Annotated[SyntheticSource | FileSource | SqlSource, Field(discriminator="kind")]
ProductionSource = Annotated[
    FileSource | PredictionLogSource, Field(discriminator="kind")
]

# ---------------------------------------------------------------- schema


class ColumnSchema(StrictModel):
    type: ColumnType | None = None
    min: float | None = None
    max: float | None = None
    values: list[Any] | None = None

    @model_validator(mode="after")
    def _range_is_ordered(self) -> ColumnSchema:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class RowCount(StrictModel):
    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)


class SchemaSpec(StrictModel):
    columns: dict[str, ColumnSchema] = Field(default_factory=dict)
    nullable: list[str] | None = Field(
        default=None,
        description="Columns allowed to hold nulls; every other column must be non-null. "
        "Left out: inferred from the reference data.",
    )
    row_count: RowCount | None = None
    infer: bool = Field(
        default=True,
        description="Fill types, ranges and categories that the spec leaves out from the reference data.",
    )
    on_failure: Literal["block", "warn"] = "block"


# ---------------------------------------------------------------- features


class DerivedFeature(StrictModel):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    expr: str | None = Field(default=None, description="pandas eval expression over input columns.")
    function: str | None = Field(default=None, description="Dotted path to f(DataFrame) -> Series.")
    inputs: list[str] | None = Field(
        default=None, description="Columns the function reads (required with `function`)."
    )
    type: Literal["numeric", "categorical"] = "numeric"

    @model_validator(mode="after")
    def _one_definition(self) -> DerivedFeature:
        if (self.expr is None) == (self.function is None):
            raise ValueError("give exactly one of `expr` or `function`")
        if self.function is not None:
            _check_importable(self.function, "function")
            if not self.inputs:
                raise ValueError("`inputs` is required with `function`")
        return self


class SplitSpec(StrictModel):
    test_size: float = Field(default=0.2, gt=0, lt=1)
    by: Literal["random", "time"] = "random"
    column: str | None = None
    seed: int = 7

    @model_validator(mode="after")
    def _time_needs_column(self) -> SplitSpec:
        if self.by == "time" and not self.column:
            raise ValueError("split by time needs `column`")
        return self


class FeaturesSpec(StrictModel):
    numeric: list[str] | None = None
    categorical: list[str] | None = None
    derived: list[DerivedFeature] = Field(default_factory=list)
    split: SplitSpec = Field(default_factory=SplitSpec)

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


# ---------------------------------------------------------------- models


class _ModelBase(StrictModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
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


class SklearnModel(_ModelBase):
    framework: Literal["sklearn"] = "sklearn"
    estimator: str = Field(description="Dotted path to a scikit-learn compatible estimator class.")
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("estimator")
    @classmethod
    def _estimator_imports(cls, value: str) -> str:
        return _check_importable(value, "estimator")


class TorchModel(_ModelBase):
    framework: Literal["torch"]
    hidden_layers: list[int] = Field(default_factory=lambda: [64, 32])
    epochs: int = Field(default=20, ge=1)
    batch_size: int = Field(default=256, ge=1)
    learning_rate: float = Field(default=1e-3, gt=0)
    dropout: float = Field(default=0.0, ge=0, lt=1)
    weight_decay: float = Field(default=0.0, ge=0)
    early_stopping_patience: int | None = Field(default=5, ge=1)
    validation_fraction: float = Field(default=0.1, gt=0, lt=0.5)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 0


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
    metric: str | None = Field(default=None, description="Defaults to roc_auc or rmse by task.")
    cv_folds: int = Field(default=5, ge=2)
    max_latency_ms: float | None = Field(default=None, gt=0, description="Per-row inference latency.")
    max_size_mb: float | None = Field(default=None, gt=0)


class GateSpec(StrictModel):
    metric: str | None = None
    min: float | None = None
    max_regression: float = Field(default=0.0, ge=0)


class EvaluationSpec(StrictModel):
    metrics: list[str] | None = None
    gate: GateSpec = Field(default_factory=GateSpec)
    slices: list[str] = Field(default_factory=list)
    bootstrap_samples: int = Field(default=200, ge=0)


class ServingSpec(StrictModel):
    batchable: bool = True
    max_batch_size: int = Field(default=64, ge=1)
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


# ---------------------------------------------------------------- monitoring


class DriftSpec(StrictModel):
    method: Literal["auto", "psi", "ks", "chi2", "jensenshannon", "wasserstein"] = "auto"
    threshold: float | None = Field(default=None, gt=0)
    share: float = Field(default=0.5, gt=0, le=1)


class RetrainSpec(StrictModel):
    on_drift: bool = True
    cooldown_hours: float = Field(default=6, ge=0)
    cron: str | None = None


class MonitoringSpec(StrictModel):
    production_data: ProductionSource | None = None
    drift: DriftSpec = Field(default_factory=DriftSpec)
    check_cron: str | None = None
    retrain: RetrainSpec = Field(default_factory=RetrainSpec)
    sensors_enabled: bool = True


# ---------------------------------------------------------------- resources


class StageResources(StrictModel):
    cpu: str | None = None
    memory: str | None = None
    gpu: int = Field(default=0, ge=0)


# ---------------------------------------------------------------- the spec


class PipelineSpec(StrictModel):
    name: str = Field(pattern=NAME_PATTERN, description="Asset key prefix.")
    description: str = ""
    owners: list[Annotated[str, Field(pattern=OWNER_PATTERN)]] = Field(default_factory=list)
    task: Task
    target: str
    source: Source
    data_schema: SchemaSpec = Field(default_factory=SchemaSpec, alias="schema")
    features: FeaturesSpec = Field(default_factory=FeaturesSpec)
    models: list[ModelSpec] = Field(min_length=1)
    selection: SelectionSpec = Field(default_factory=SelectionSpec)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    serving: ServingSpec = Field(default_factory=ServingSpec)
    monitoring: MonitoringSpec = Field(default_factory=MonitoringSpec)
    resources: dict[Literal["ingest", "validate", "features", "train", "evaluate", "package"], StageResources] = (
        Field(default_factory=dict)
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _consistent(self) -> PipelineSpec:
        names = [m.name for m in self.models]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"models: candidate name {duplicated[0]!r} is used twice")
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
        ):
            if metric is not None and metric not in allowed:
                raise ValueError(
                    f"{field}: {metric!r} is not a {self.task} metric; choose one of {', '.join(allowed)}"
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

    def spec_hash(self) -> str:
        """Stable hash of the spec's content (key order and formatting do not matter)."""
        payload = json.dumps(self.model_dump(mode="json", by_alias=True), sort_keys=True)
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
