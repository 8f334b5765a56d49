"""Ground truth sent to the model service's POST /feedback, checked before it is kept:
the request id must name a prediction this service made (and the record index one of
its records), the label must be a class of the served version (classification) or a
finite number (regression), a repeated (request id, index, label) is acknowledged
once, and a different label for a record already labelled is a conflict.

FeedbackBook holds what that needs in memory: the records served (from the audit
log at start-up, then each prediction) and the labels received (from the feedback
log at start-up, then each accepted one). Pure logic: the service does the I/O."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ml_pipelines.core.errors import InputError


class FeedbackError(InputError):
    """A feedback request the service refuses; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Feedback:
    request_id: str
    index: int
    label: Any


@dataclass
class FeedbackBook:
    served: dict[str, int] = field(default_factory=dict)  # request id -> records it carried
    labels: dict[tuple[str, int], Any] = field(default_factory=dict)  # (request id, index) -> label

    def record_served(self, request_id: str, records: int) -> None:
        self.served[request_id] = max(records, self.served.get(request_id, 0))

    def load_served(self, audit_records: Iterable[dict[str, Any]]) -> None:
        for record in audit_records:
            if not record.get("shadow"):
                self.record_served(record["request_id"], int(record.get("index", 0)) + 1)

    def load_labels(self, feedback_records: Iterable[dict[str, Any]]) -> None:
        for record in feedback_records:
            self.labels[(record["request_id"], int(record.get("index", 0)))] = record["label"]

    def accept(self, items: Sequence[Feedback]) -> tuple[list[Feedback], int]:
        """(new labels to keep, repeats already kept); raises FeedbackError for an unknown
        request or record, or a label that contradicts one already kept."""
        new, repeats, seen = [], 0, {}
        for position, item in enumerate(items):
            where = f"records[{position}]"
            count = self.served.get(item.request_id)
            if count is None:
                raise FeedbackError(f"{where}.request_id: {item.request_id!r} is not a prediction this service made", 404)
            if item.index >= count:
                raise FeedbackError(f"{where}.index: request {item.request_id} carried {count} record(s), "
                                    f"so index {item.index} does not exist", 404)
            key = (item.request_id, item.index)
            known = self.labels.get(key, seen.get(key))
            if known is not None and known != item.label:
                raise FeedbackError(f"{where}.label: {item.request_id} record {item.index} already has label "
                                    f"{known!r}; a different label ({item.label!r}) is a conflict", 409)
            if known is not None:
                repeats += 1
                continue
            seen[key] = item.label
            new.append(item)
        return new, repeats

    def kept(self, items: Iterable[Feedback]) -> None:
        for item in items:
            self.labels[(item.request_id, item.index)] = item.label


def parse_feedback(records: Any, *, task: str, classes: Sequence[Any] | None, max_records: int) -> list[Feedback]:
    """The request's records as Feedback, or a FeedbackError naming the record and field."""
    if not isinstance(records, list) or not records:
        raise FeedbackError("`records` must be a non-empty list of {request_id, label} objects")
    if len(records) > max_records:
        raise FeedbackError(f"`records` holds {len(records)} records; at most {max_records} per request", 413)
    return [_parse_one(i, record, task, classes) for i, record in enumerate(records)]


def _parse_one(position: int, record: Any, task: str, classes: Sequence[Any] | None) -> Feedback:
    where = f"records[{position}]"
    if not isinstance(record, dict):
        raise FeedbackError(f"{where}: must be an object, got {type(record).__name__}")
    unknown = sorted(set(record) - {"request_id", "index", "label"})
    if unknown:
        raise FeedbackError(f"{where}.{unknown[0]}: unknown field")
    request_id, index = record.get("request_id"), record.get("index", 0)
    if not isinstance(request_id, str) or not request_id:
        raise FeedbackError(f"{where}.request_id: must be the request_id a /predict answer gave")
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise FeedbackError(f"{where}.index: must be the record's position in that request (0, 1, ...)")
    if "label" not in record or record["label"] is None:
        raise FeedbackError(f"{where}.label: field is missing")
    return Feedback(request_id, index, _label(f"{where}.label", record["label"], task, classes))


def _label(where: str, label: Any, task: str, classes: Sequence[Any] | None) -> Any:
    if task == "regression":
        if isinstance(label, bool) or not isinstance(label, (int, float)) or not math.isfinite(label):
            raise FeedbackError(f"{where}: must be a finite number (got {label!r})")
        return float(label)
    for known in classes or ():
        if type(label) is type(known) and label == known:
            return label
        if isinstance(known, int) and isinstance(label, float) and label.is_integer() and int(label) == known:
            return known  # a client that built its records with pandas sends 1.0 for class 1
    shown = ", ".join(repr(c) for c in classes or ())
    raise FeedbackError(f"{where}: {label!r} is not one of the model's classes ({shown})")
