"""The request schema, generated from the features a model version was trained on."""

from __future__ import annotations

from typing import Annotated, Any, Optional, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, create_model, model_serializer

from ml_pipelines.core.records import ModelInputs
from ml_pipelines.core.validation import ColumnRule, ResolvedSchema

PYTHON_TYPES: dict[str, Any] = {"float": float, "int": int, "bool": bool, "category": str, "str": str, "datetime": str}


class RequestError(ValueError):
    """A bad request; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


# ints become float64 before the model sees them; beyond this they would turn into inf
INT_BOUNDS = (-(2**63), 2**63 - 1)
STRING_TYPES = ("category", "str", "datetime")
SHOWN_CHARS = 40  # of a bad value, in an error message


def record_model(
    features: ModelInputs, schema: ResolvedSchema | None = None, max_string_length: int | None = None
) -> type[BaseModel]:
    """One record: every model input, strictly typed; nullable inputs may be null but not absent.
    Numbers must be finite: NaN or 1e400 (inf) would otherwise slip past `null is not allowed` or
    fail inside the model with a 500. Numbers must lie in the range the spec declares; a range
    inferred from the training data guards training only (a shifted world's legitimate values
    are served and show up as drift). Strings are at most max_string_length long. Categories
    outside the known values are accepted (the encoder ignores them and the service counts them).
    An int input takes an integral float (215.0, what pandas makes of an int column with NaN)
    as that int; 215.5 stays an error."""
    fields: dict[str, Any] = {}
    for column in features.inputs:
        kind = features.type_of(column)
        rule = schema.rule(column) if schema is not None else None
        field_type = Annotated[PYTHON_TYPES[kind], _constraints(kind, rule, max_string_length)]
        if kind == "int":
            field_type = Annotated[field_type, BeforeValidator(_integral_float_as_int)]
        fields[column] = (Optional[field_type] if features.is_nullable(column) else field_type, ...)  # noqa: UP045
    return create_model(
        "Record", __config__=ConfigDict(extra="forbid", strict=True, allow_inf_nan=False), **fields
    )


def _integral_float_as_int(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _constraints(kind: str, rule: ColumnRule | None, max_string_length: int | None) -> Any:
    if kind in STRING_TYPES:
        known = rule.values if rule is not None and kind == "category" else None
        description = f"known values: {', '.join(map(str, known))}; others are served and counted" if known else None
        return Field(max_length=max_string_length, description=description)
    if kind not in ("float", "int"):
        return Field()
    low = rule.declared_bound("min") if rule is not None else None
    high = rule.declared_bound("max") if rule is not None else None
    if kind == "int":
        low = INT_BOUNDS[0] if low is None else max(low, INT_BOUNDS[0])
        high = INT_BOUNDS[1] if high is None else min(high, INT_BOUNDS[1])
    return Field(ge=low, le=high)


def validate_records(records: Any, model: type[BaseModel], max_records: int) -> list[dict[str, Any]]:
    """Validated records, or a RequestError naming the record index and the field."""
    if not isinstance(records, list):
        raise RequestError("`records` must be an array of objects")
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
                    message = _describe(error)
                problems.append(f"records[{index}].{field}: {message}")
            raise RequestError("; ".join(problems)) from None
    return validated


def _describe(error: Any) -> str:
    """One pydantic error as `must be >= 18 (got -5)`; a long bad value is shortened, never echoed whole."""
    kind, context, value = error["type"], error.get("ctx") or {}, error.get("input")
    if kind == "greater_than_equal":
        return f"must be >= {_number(context['ge'])} (got {_shown(value)})"
    if kind == "less_than_equal":
        return f"must be <= {_number(context['le'])} (got {_shown(value)})"
    if kind == "string_too_long":
        return f"must be at most {context['max_length']} characters (got {len(value)})"
    return f"{error['msg']} (got {_shown(value)})"


def _number(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]}... ({len(text)} characters)"


# ---------------------------------------------------------------- typed IO, for /docs.json


class _Answer(BaseModel):
    """A served answer; `probabilities` is left out (not null) for a regressor."""

    @model_serializer(mode="wrap")
    def _without_absent_probabilities(self, handler):  # noqa: ANN001, ANN202 - an annotated return would replace the schema
        data = handler(self)
        if data.get("probabilities", 0) is None:
            del data["probabilities"]
        return data


def response_model(task: str, classes: list[Any] | None) -> type[BaseModel]:
    """The /predict answer of a version: its predictions typed by the task (a classifier's by its
    class labels), and, for a classifier, each record's probability per class label."""
    if task == "classification" and classes:
        label_types = tuple(dict.fromkeys(type(c) for c in classes))
        prediction: Any = Union[label_types] if len(label_types) > 1 else label_types[0]  # noqa: UP007
        labels = ", ".join(map(str, classes))
    else:
        prediction, labels = float, None
    described = (f"per record, the probability of each class label ({labels}), keyed by the label as a string"
                 if labels else "classifiers only")
    return create_model(
        "Prediction",
        __base__=_Answer,
        request_id=(str, Field(description="identifies the request in the audit trail and for /feedback")),
        model_version=(Union[str, list[str]], Field(  # noqa: UP007
            description="the model version that answered (a list when a champion swap split the request)")),
        predictions=(list[prediction], Field(description="one per record, in order"
                                             + (f"; a class label ({labels})" if labels else ""))),
        probabilities=(Optional[list[dict[str, float]]], Field(None, description=described)),  # noqa: UP045
    )


class FeedbackRecord(BaseModel):
    request_id: str = Field(description="the request_id of the answer")
    index: int = Field(0, ge=0, description="the record's position in that request")
    label: Any = Field(description="the ground truth (a class label, or the target value)")


class FeedbackAnswer(BaseModel):
    accepted: int = Field(description="labels kept")
    repeats: int = Field(description="labels already kept for the same record")
