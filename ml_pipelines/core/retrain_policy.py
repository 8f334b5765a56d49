"""When monitoring reports become retraining requests: drift reports (retrain.on_drift)
and production-performance reports (retrain.on_performance), with run keys, a
cooldown and skip reasons that say why nothing happened."""

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

    @property
    def fired(self) -> bool:
        return self.drifted

    def describe(self) -> str:
        return f"{self.share_drifted:.0%} of features drifted"


@dataclass(frozen=True)
class PerformanceEvent:
    storage_id: int
    partition: str | None
    dropped: bool  # performance_holds failed
    detail: str  # the check's reason

    @property
    def fired(self) -> bool:
        return self.dropped

    def describe(self) -> str:
        return self.detail


@dataclass(frozen=True)
class Signal:
    """What a sensor watches: the retrain reason it records, its reports, its on/off setting."""

    reason: str
    report: str
    setting: str
    fired: str  # what a firing report is called in messages
    none_fired: str


DRIFT = Signal("drift", "drift report", "retrain.on_drift", "drift", "none drifted")
PERFORMANCE = Signal(
    "performance", "performance report", "retrain.on_performance", "a performance drop", "no performance drop"
)


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
    event: DriftEvent | PerformanceEvent | None = None


def _stamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def decide_retrain(
    events: list[DriftEvent] | list[PerformanceEvent],
    cursor: RetrainCursor,
    *,
    now: float,
    cooldown_hours: float,
    enabled: bool = True,
    signal: Signal = DRIFT,
) -> RetrainDecision:
    """One decision per sensor tick over the reports since the cursor."""
    if not events:
        return RetrainDecision(None, f"no new {signal.report}s", cursor)
    consumed = RetrainCursor(max(e.storage_id for e in events), cursor.last_request_at)
    fired = [e for e in events if e.fired]
    if not fired:
        return RetrainDecision(None, f"{len(events)} new {signal.report}(s), {signal.none_fired}", consumed)
    latest = fired[-1]
    where = f"partition {latest.partition}" if latest.partition else f"report {latest.storage_id}"
    if not enabled:
        return RetrainDecision(None, f"{signal.fired} in {where}, but {signal.setting} is off", consumed, latest)
    if cursor.last_request_at is not None and now - cursor.last_request_at < cooldown_hours * 3600:
        ready = cursor.last_request_at + cooldown_hours * 3600
        return RetrainDecision(
            None,
            f"{signal.fired} in {where} ({latest.describe()}), but in cooldown: last retrain "
            f"requested {_stamp(cursor.last_request_at)}, next allowed {_stamp(ready)}",
            consumed,
            latest,
        )
    return RetrainDecision(
        f"{signal.reason}-{latest.storage_id}",
        f"{signal.fired} in {where}: {latest.describe()}",
        RetrainCursor(consumed.last_storage_id, now),
        latest,
    )
