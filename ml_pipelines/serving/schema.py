"""The request schema, generated from the features a model version was trained on."""

from __future__ import annotations

from typing import Annotated, Any, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from ml_pipelines.core.records import ModelInputs

PYTHON_TYPES: dict[str, Any] = {"float": float, "int": int, "bool": bool, "category": str, "str": str, "datetime": str}


class RequestError(ValueError):
    """A bad request; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


# ints become float64 before the model sees them; beyond this they would turn into inf
INT = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]


def record_model(features: ModelInputs) -> type[BaseModel]:
    """One record: every model input, strictly typed; nullable inputs may be null but not absent.
    Numbers must be finite: NaN or 1e400 (inf) would otherwise slip past `null is not allowed` or
    fail inside the model with a 500."""
    fields: dict[str, Any] = {}
    for column in features.inputs:
        python_type = PYTHON_TYPES[features.type_of(column)]
        python_type = INT if python_type is int else python_type
        fields[column] = (Optional[python_type] if features.is_nullable(column) else python_type, ...)  # noqa: UP045
    return create_model(
        "Record", __config__=ConfigDict(extra="forbid", strict=True, allow_inf_nan=False), **fields
    )


def validate_records(records: Any, model: type[BaseModel], max_records: int) -> list[dict[str, Any]]:
    """Validated records, or a RequestError naming the record index and the field."""
    if not isinstance(records, list):
        raise RequestError("`records` must be a list of objects")
    if not records:
        raise RequestError("`records` is empty; send at least one record")
    if len(records) > max_records:
        raise RequestError(f"`records` holds {len(records)} records; at most {max_records} per request", 413)
    validated = []
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise RequestError(f"records[{index}]: must be an object, got {type(record).__name__}")
        try:
            validated.append(model.model_validate(record).model_dump())
        except ValidationError as exc:
            problems = []
            for error in exc.errors():
                field = ".".join(str(p) for p in error["loc"]) or "<record>"
                kind = error["type"]
                if kind == "missing":
                    message = "field is missing"
                elif kind == "extra_forbidden":
                    message = "unknown field"
                elif error.get("input") is None and kind.endswith("_type"):
                    message = "null is not allowed"
                else:
                    message = f"{error['msg']} (got {error.get('input')!r})"
                problems.append(f"records[{index}].{field}: {message}")
            raise RequestError("; ".join(problems)) from None
    return validated
