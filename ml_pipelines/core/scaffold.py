"""A starter spec whose schema is inferred from a CSV (`ml-pipelines init`): infer, validate, write."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from ml_pipelines.core.sources import SourceError, read_file
from ml_pipelines.core.validation import infer_column_rule, infer_column_type
from ml_pipelines.spec import NAME_PATTERN, PipelineSpec, format_validation_error

MAX_CLASSES = 20

DEFAULT_MODELS = {
    "classification": [
        {"name": "gbm", "estimator": "sklearn.ensemble.HistGradientBoostingClassifier",
         "search": {"learning_rate": [0.05, 0.1]}},
        {"name": "logreg", "estimator": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 1000}},
    ],
    "regression": [
        {"name": "gbm", "estimator": "sklearn.ensemble.HistGradientBoostingRegressor",
         "search": {"learning_rate": [0.05, 0.1]}},
        {"name": "ridge", "estimator": "sklearn.linear_model.Ridge", "search": {"alpha": [0.1, 1.0, 10.0]}},
    ],
}


def infer_task(target: pd.Series) -> str:
    kind = infer_column_type(target)
    if kind in ("category", "str", "bool"):
        return "classification"
    if kind == "int" and target.nunique(dropna=True) <= MAX_CLASSES:
        return "classification"
    return "regression"


def _number(value: float | None) -> float | int | None:
    if value is None:
        return None
    return int(value) if float(value).is_integer() else round(float(value), 6)


def _input_type(kind: str, nullable: bool, *, is_target: bool) -> str:
    """Whole numbers with missing values load as float (NaN has no int), and clients that build
    records with pandas send them as 215.0: such an input is a float, not an int."""
    return "float" if kind == "int" and nullable and not is_target else kind


def starter_spec(name: str, frame: pd.DataFrame, target: str, source_path: str, task: str = "auto") -> dict[str, Any]:
    if not re.match(NAME_PATTERN, name):
        raise ValueError(f"name {name!r} must match {NAME_PATTERN}")
    if target not in frame.columns:
        raise ValueError(f"--target {target!r} is not a column of {source_path}; columns: {', '.join(frame.columns)}")
    task = infer_task(frame[target]) if task == "auto" else task
    columns: dict[str, Any] = {}
    nullable = []
    for column in frame.columns:
        rule = infer_column_rule(frame[column], categorical_values=(column == target and task == "classification"))
        entry: dict[str, Any] = {"type": _input_type(rule.type, rule.nullable, is_target=column == target)}
        if rule.min is not None:
            entry["min"] = _number(rule.min)
        if rule.max is not None:
            entry["max"] = _number(rule.max)
        if rule.values is not None:
            entry["values"] = list(rule.values)
        columns[str(column)] = entry
        if rule.nullable:
            nullable.append(str(column))
    numeric = [c for c, e in columns.items() if c != target and e["type"] in ("float", "int")]
    categorical = [c for c, e in columns.items() if c != target and e["type"] in ("category", "bool")]
    metric = "roc_auc" if task == "classification" else "rmse"
    return {
        "type": "ml_pipelines.components.MLPipeline",
        "attributes": {
            "name": name,
            "description": f"Starter spec inferred from {source_path}; review before use.",
            "task": task,
            "target": target,
            "source": {"kind": "csv", "path": source_path},
            "schema": {"columns": columns, "nullable": nullable, "row_count": {"min": 1}, "infer": True,
                       "on_failure": "block"},
            "features": {"numeric": numeric, "categorical": categorical},
            "models": DEFAULT_MODELS[task],
            "selection": {"metric": metric, "cv_folds": 5},
            "evaluation": {"gate": {"metric": metric}},
        },
    }


def find_project_root(path: Path) -> Path | None:
    """The nearest folder at or above `path` (which need not exist yet) holding pyproject.toml or
    setup.py: Dagster resolves a spec's relative paths against it (the component's project root)."""
    path = path.resolve()
    for folder in (path, *path.parents):
        if (folder / "pyproject.toml").is_file() or (folder / "setup.py").is_file():
            return folder
    return None


def spec_path_of(source: Path, project_root: Path | None) -> str:
    """How a spec names `source` (relative to the current folder, as the user typed it) so that it
    resolves from the project root: relative to the root when inside it, else absolute."""
    resolved = source.resolve()
    if project_root is not None:
        try:
            return resolved.relative_to(project_root.resolve()).as_posix()
        except ValueError:
            pass
    return str(resolved)


def render_starter_spec(
    name: str, source: Path, target: str, *, task: str, project_root: Path | None, command: str
) -> str:
    """The text of a starter spec for `source` (a CSV), validated; `command` is named in its header."""
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no such file (looked in {source.resolve().parent})")
    try:
        frame = read_file("csv", str(source), {})
    except SourceError as exc:
        raise ValueError(str(exc)) from exc
    document = starter_spec(name, frame, target, spec_path_of(source, project_root), task)
    try:
        PipelineSpec.model_validate(document["attributes"])
    except Exception as exc:  # a bug here must name the field
        raise ValueError(format_validation_error(exc, "generated spec")) from exc
    header = (
        f"# Generated by `{command}`.\n"
        "# The schema was inferred from the file: check types, ranges, categories and nullability.\n"
    )
    return header + yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


def write_starter_spec(
    name: str,
    source: Path,
    target: str,
    *,
    task: str,
    pipelines_dir: Path,
    force: bool = False,
) -> Path:
    """`ml-pipelines init`: <pipelines_dir>/<name>/defs.yaml, its source path resolving from the
    project root that holds pipelines_dir."""
    path = pipelines_dir / name / "defs.yaml"
    command = f"ml-pipelines init {name} --from {source} --target {target}"
    text = render_starter_spec(
        name, source, target, task=task, project_root=find_project_root(pipelines_dir), command=command
    )
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists; pass --force to overwrite")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
