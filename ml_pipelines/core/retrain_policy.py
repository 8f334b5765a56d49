"""When drift reports become retraining requests: run keys, cooldown, skip reasons."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime


@dataclass(frozen=True)
class DriftEvent:
    storage_id: int
    partition: str | None
    drifted: bool
    share_drifted: float


@dataclass(frozen=True)
class RetrainCursor:
    last_storage_id: int = 0
    last_request_at: float | None = None  # unix seconds of the last retrain request

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, raw: str | None) -> RetrainCursor:
        return cls(**json.loads(raw)) if raw else cls()


@dataclass(frozen=True)
class RetrainDecision:
    run_key: str | None  # None: no request
    reason: str
    cursor: RetrainCursor
    event: DriftEvent | None = None


def _stamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def decide_retrain(
    events: list[DriftEvent], cursor: RetrainCursor, *, now: float, cooldown_hours: float, on_drift: bool = True
) -> RetrainDecision:
    """One decision per sensor tick over the drift reports since the cursor."""
    if not events:
        return RetrainDecision(None, "no new drift reports", cursor)
    consumed = RetrainCursor(max(e.storage_id for e in events), cursor.last_request_at)
    drifted = [e for e in events if e.drifted]
    if not drifted:
        return RetrainDecision(None, f"{len(events)} new drift report(s), none drifted", consumed)
    latest = drifted[-1]
    where = f"partition {latest.partition}" if latest.partition else f"report {latest.storage_id}"
    if not on_drift:
        return RetrainDecision(None, f"drift in {where}, but retrain.on_drift is off", consumed, latest)
    if cursor.last_request_at is not None and now - cursor.last_request_at < cooldown_hours * 3600:
        ready = cursor.last_request_at + cooldown_hours * 3600
        return RetrainDecision(
            None,
            f"drift in {where} ({latest.share_drifted:.0%} of features), but in cooldown: last retrain "
            f"requested {_stamp(cursor.last_request_at)}, next allowed {_stamp(ready)}",
            consumed,
            latest,
        )
    return RetrainDecision(
        f"drift-{latest.storage_id}",
        f"drift in {where}: {latest.share_drifted:.0%} of features drifted",
        RetrainCursor(consumed.last_storage_id, now),
        latest,
    )
