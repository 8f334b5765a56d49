"""Feature resolution, derived columns, the train/test split and the preprocessing
pipeline. Fitted transforms live inside the model's sklearn Pipeline, so serving
applies exactly the transform that training fitted.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from ml_pipelines.core.errors import FeatureError
from ml_pipelines.core.records import ModelInputs, StoredFile
from ml_pipelines.core.retrain_data import ORIGIN_COLUMN, Provenance, newest_production_positions, provenance_of
from ml_pipelines.dotted import import_dotted
from ml_pipelines.expressions import ExpressionError, check_expression, evaluate_expression
from ml_pipelines.spec import DerivedFeature, PipelineSpec, SplitSpec


@dataclass(frozen=True)
class FeatureColumns:
    numeric: tuple[str, ...]  # model features, derived ones included
    categorical: tuple[str, ...]
    derived: tuple[DerivedFeature, ...]
    inputs: tuple[str, ...]  # raw columns the model reads

    @property
    def features(self) -> tuple[str, ...]:
        return self.numeric + self.categorical

    def lineage(self) -> dict[str, tuple[str, ...]]:
        """Each model feature -> the raw input columns it is computed from."""
        derived = {d.name: tuple(derived_inputs(d)) for d in self.derived}
        return {name: derived.get(name, (name,)) for name in self.features}


@dataclass(frozen=True)
class SplitPositions:
    """Which rows of the data as it entered `features` became the training and the test rows:
    positions in that frame, in the order the rows were used."""

    train: np.ndarray
    test: np.ndarray

    @property
    def rows(self) -> int:
        return len(self.train) + len(self.test)


@dataclass(frozen=True)
class FeatureSet:
    train: pd.DataFrame  # inputs, slice columns and the target
    test: pd.DataFrame
    columns: FeatureColumns
    target: str
    task: str
    stratified: bool
    data_version: str = ""  # content hash of the validated data the split came from
    schema: Any = None  # the ResolvedSchema the data was validated against
    partitions: tuple[str, ...] = ()
    provenance: Provenance | None = None  # rows from the source and from each production batch
    holdout: str = "random"  # random | time | newest production rows
    split: SplitPositions | None = None  # the rows train and test came from
    data_snapshot: StoredFile | None = None  # that data, stored in the registry (core.snapshots)

    def with_lineage(self, *, data_version: str, schema: Any, partitions: tuple[str, ...]) -> FeatureSet:
        return replace(self, data_version=data_version, schema=schema, partitions=partitions)

    def with_data_snapshot(self, stored: StoredFile) -> FeatureSet:
        return replace(self, data_snapshot=stored)

    def input_types(self) -> dict[str, str]:
        """Column type per raw model input, from the validation rules or the dtype."""
        types = {}
        for column in self.columns.inputs:
            rule = self.schema.rule(column) if self.schema is not None else None
            if rule is not None and rule.type is not None:
                types[column] = rule.type
            else:
                types[column] = "float" if column in self.columns.numeric else "category"
        return types

    def model_inputs(self) -> ModelInputs:
        """The model's input contract, stored with its registry version and used by serving."""
        nullable = {
            c: (self.schema.rule(c).nullable if self.schema is not None and self.schema.rule(c) else True)
            for c in self.columns.inputs
        }
        return ModelInputs(
            inputs=list(self.columns.inputs),
            numeric=list(self.columns.numeric),
            categorical=list(self.columns.categorical),
            derived=[d.model_dump(exclude_none=True) for d in self.columns.derived],
            types=self.input_types(),
            nullable=nullable,
            lineage={k: list(v) for k, v in self.columns.lineage().items()},
            train_rows=len(self.train),
            test_rows=len(self.test),
        )

    def xy(self, part: str) -> tuple[pd.DataFrame, pd.Series]:
        frame = self.train if part == "train" else self.test
        return frame.drop(columns=[self.target]), frame[self.target]


def expr_inputs(expr: str) -> list[str]:
    """Column names an expression reads, in order of appearance (function names excluded)."""
    try:
        return check_expression(expr)
    except ExpressionError as exc:
        raise FeatureError(str(exc)) from None


def derived_inputs(feature: DerivedFeature) -> list[str]:
    return list(feature.inputs) if feature.function else expr_inputs(feature.expr or "")


def required_columns(spec: PipelineSpec) -> list[str]:
    """Columns the data must have, known from the spec alone."""
    features = spec.features
    derived_names = {d.name for d in features.derived}
    columns = [spec.target, *(features.numeric or []), *(features.categorical or [])]
    for derived in features.derived:
        columns += [c for c in derived_inputs(derived) if c not in derived_names]
    if features.split.by == "time" and features.split.column:
        columns.append(features.split.column)
    columns += spec.evaluation.slices
    if spec.source.partitions is not None:
        columns.append(spec.source.partitions.column)
    return list(dict.fromkeys(columns))


def check_required_columns(frame: pd.DataFrame, spec: PipelineSpec, where: str) -> None:
    missing = [c for c in required_columns(spec) if c not in frame.columns]
    if missing:
        raise FeatureError(
            f"{where}: column {missing[0]!r} named in the spec is missing from the data"
            + (f" (also missing: {', '.join(missing[1:])})" if len(missing) > 1 else "")
            + f"; the data has: {', '.join(map(str, frame.columns))}"
        )


def resolve_feature_columns(spec: PipelineSpec, frame: pd.DataFrame) -> FeatureColumns:
    """The spec's features, or, where it leaves them out, every non-target column by dtype."""
    features = spec.features
    excluded = {spec.target, ORIGIN_COLUMN, *(spec.monitoring.production_id_columns() or [])}
    if features.split.by == "time" and features.split.column:
        excluded.add(features.split.column)
    if spec.source.partitions is not None:
        excluded.add(spec.source.partitions.column)
    candidates = [c for c in frame.columns if c not in excluded]
    if features.numeric is None and features.categorical is None:
        numeric = [c for c in candidates if _is_numeric(frame[c])]
        categorical = [
            c for c in candidates if not _is_numeric(frame[c]) and not pd.api.types.is_datetime64_any_dtype(frame[c])
        ]
    else:
        numeric, categorical = list(features.numeric or []), list(features.categorical or [])
    derived_names = {d.name for d in features.derived}
    for name in numeric:
        if name in frame.columns and not _is_numeric(frame[name]):
            raise FeatureError(f"features.numeric: column {name!r} holds {frame[name].dtype} values, not numbers")
    numeric += [d.name for d in features.derived if d.type == "numeric"]
    categorical += [d.name for d in features.derived if d.type == "categorical"]
    inputs = [c for c in [*numeric, *categorical] if c not in derived_names]
    for derived in features.derived:
        inputs += [c for c in derived_inputs(derived) if c not in derived_names]
    if not numeric and not categorical:
        raise FeatureError("features: no feature columns remain after removing the target")
    return FeatureColumns(tuple(numeric), tuple(categorical), tuple(features.derived), tuple(dict.fromkeys(inputs)))


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


class DerivedColumns(TransformerMixin, BaseEstimator):
    """Adds the spec's derived columns: expressions (checked, then DataFrame.eval) or functions
    from trusted modules. Both are checked again here, where a stored model runs them."""

    def __init__(self, derived: tuple[tuple[str, str | None, str | None], ...] = ()):
        self.derived = derived

    def fit(self, X: pd.DataFrame, y=None):  # noqa: N803 - sklearn's signature
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:  # noqa: N803
        frame = X.copy()
        for name, expr, function in self.derived:
            try:
                if expr is not None:
                    frame[name] = evaluate_expression(expr, frame)
                else:
                    frame[name] = import_dotted(function)(frame)
            except Exception as exc:  # noqa: BLE001 - re-raised with the feature's name
                raise FeatureError(f"derived feature {name!r}: {exc}") from exc
            if pd.api.types.is_numeric_dtype(frame[name]):
                frame[name] = frame[name].replace([np.inf, -np.inf], np.nan)
        return frame


def build_preprocessor(columns: FeatureColumns) -> Pipeline:
    numeric = Pipeline(
        [("impute", SimpleImputer(strategy="median", add_indicator=True)), ("scale", StandardScaler())]
    )
    categorical = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
    transformers = []
    if columns.numeric:
        transformers.append(("numeric", numeric, list(columns.numeric)))
    if columns.categorical:
        transformers.append(("categorical", categorical, list(columns.categorical)))
    derived = tuple((d.name, d.expr, d.function) for d in columns.derived)
    return Pipeline(
        [
            ("derive", DerivedColumns(derived)),
            ("encode", ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=False)),
        ]
    )


def split_positions(
    frame: pd.DataFrame, target: str, split: SplitSpec, task: str
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Positions of the training and test rows of frame, in the order they are used, and whether the
    split was stratified."""
    if len(frame) < 4:
        raise FeatureError(f"split: {len(frame)} rows are too few to split into train and test")
    positions = np.arange(len(frame))
    if split.by == "time":
        order = frame[split.column].reset_index(drop=True).sort_values(kind="stable").index.to_numpy()
        cut = int(round(len(frame) * (1 - split.test_size)))
        return order[:cut], order[cut:], False
    stratify = None
    if task == "classification":
        counts = frame[target].value_counts()
        n_test = int(np.ceil(len(frame) * split.test_size))
        if counts.min() >= 2 and n_test >= len(counts):
            stratify = frame[target]
    train, test = train_test_split(positions, test_size=split.test_size, random_state=split.seed, stratify=stratify)
    return train, test, stratify is not None


def split_frame(frame: pd.DataFrame, target: str, split: SplitSpec, task: str) -> tuple[pd.DataFrame, pd.DataFrame, bool]:
    train, test, stratified = split_positions(frame, target, split, task)
    return _rows(frame, train), _rows(frame, test), stratified


def _rows(frame: pd.DataFrame, positions: np.ndarray) -> pd.DataFrame:
    return frame.iloc[positions].reset_index(drop=True)


def newest_production_split(frame: pd.DataFrame, test_size: float) -> tuple[np.ndarray, np.ndarray] | None:
    """When labelled production rows are in the data, the holdout is the newest of them
    (time order), so candidate and champion are compared on the world as it is now:
    the positions of the training and the test rows, or None without production rows."""
    positions = newest_production_positions(frame, test_size)
    if positions is None:
        return None
    test_mask = np.zeros(len(frame), dtype=bool)
    test_mask[positions] = True
    return np.flatnonzero(~test_mask), np.flatnonzero(test_mask)


def build_feature_set(spec: PipelineSpec, frame: pd.DataFrame) -> FeatureSet:
    """The spec's features and its train/test split of frame (the validated data)."""
    data, columns = _feature_frame(spec, frame)
    newest = newest_production_split(frame, spec.features.split.test_size)
    if newest is not None:
        split, stratified, holdout = SplitPositions(*newest), False, "newest production rows"
    else:
        train, test, stratified = split_positions(data, spec.target, spec.features.split, spec.task)
        split, holdout = SplitPositions(train, test), "time" if spec.features.split.by == "time" else "random"
    return FeatureSet(_rows(data, split.train), _rows(data, split.test), columns, spec.target, spec.task, stratified,
                      provenance=provenance_of(frame), holdout=holdout, split=split)


def feature_set_from_split(
    spec: PipelineSpec, frame: pd.DataFrame, split: SplitPositions, *, stratified: bool, holdout: str
) -> FeatureSet:
    """The feature set of a stored split: the same training and test rows, in the same order, that
    build_feature_set chose when the version was built (`ml-pipelines reproduce`)."""
    data, columns = _feature_frame(spec, frame)
    if split.rows != len(data) or (len(split.train) and split.train.max() >= len(data)) or (
        len(split.test) and split.test.max() >= len(data)
    ):
        raise FeatureError(f"split: the stored split names {split.rows} rows; the data has {len(data)}")
    return FeatureSet(_rows(data, split.train), _rows(data, split.test), columns, spec.target, spec.task, stratified,
                      provenance=provenance_of(frame), holdout=holdout, split=split)


def check_feature_frame(spec: PipelineSpec, frame: pd.DataFrame) -> FeatureColumns:
    """The feature columns of frame, after the checks a split needs: the columns are there, the
    target has no nulls and, for classification, two classes at least, and there are rows enough
    to split; else a FeatureError."""
    check_required_columns(frame, spec, "features")
    columns = resolve_feature_columns(spec, frame)
    if frame[spec.target].isna().any():
        raise FeatureError(f"target {spec.target!r} has {int(frame[spec.target].isna().sum())} null values")
    if spec.task == "classification" and frame[spec.target].nunique() < 2:
        classes = sorted(frame[spec.target].unique().tolist(), key=str)
        raise FeatureError(f"target {spec.target!r} has {len(classes)} class(es) {classes}; classification needs two")
    if len(frame) < 4:
        raise FeatureError(f"split: {len(frame)} rows are too few to split into train and test")
    return columns


def _feature_frame(spec: PipelineSpec, frame: pd.DataFrame) -> tuple[pd.DataFrame, FeatureColumns]:
    """The columns of frame the model, the slices and the split read; checked."""
    columns = check_feature_frame(spec, frame)
    keep = list(dict.fromkeys([*columns.inputs, *spec.evaluation.slices, spec.target]))
    if spec.features.split.by == "time":
        keep.append(spec.features.split.column)
    return frame[list(dict.fromkeys(keep))], columns
