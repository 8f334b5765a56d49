"""core/retrain_policy.py: one decision per sensor tick, from the drift reports since the cursor."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ml_pipelines.core.retrain_policy import DriftEvent, RetrainCursor, decide_retrain

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC).timestamp()
HOUR = 3600.0


def _event(storage_id: int, drifted: bool, partition: str | None = None, share: float = 0.5) -> DriftEvent:
    return DriftEvent(storage_id, partition, drifted, share if drifted else 0.0)


def test_no_events_keeps_the_cursor_and_requests_nothing():
    cursor = RetrainCursor(17, NOW - HOUR)
    decision = decide_retrain([], cursor, now=NOW, cooldown_hours=6)
    assert decision.run_key is None
    assert decision.reason == "no new drift reports"
    assert decision.cursor == cursor
    assert decision.event is None


def test_reports_without_drift_advance_the_cursor_only():
    cursor = RetrainCursor(3, None)
    decision = decide_retrain([_event(5, False, "a.csv"), _event(9, False, "b.csv")], cursor, now=NOW,
                              cooldown_hours=6)
    assert decision.run_key is None
    assert "2 new drift report(s), none drifted" == decision.reason
    assert decision.cursor == RetrainCursor(9, None)  # consumed, no request time


def test_drift_requests_a_retrain_keyed_by_the_report():
    events = [_event(10, False, "a.csv"), _event(11, True, "b.csv", 0.6), _event(12, False, "c.csv")]
    decision = decide_retrain(events, RetrainCursor(), now=NOW, cooldown_hours=6)
    assert decision.run_key == "drift-11"  # the latest drifted report, stable across ticks
    assert "partition b.csv" in decision.reason and "60%" in decision.reason
    assert decision.cursor == RetrainCursor(12, NOW)  # every event consumed, request time recorded
    assert decision.event == events[1]


def test_the_latest_drifted_report_names_the_run_key():
    events = [_event(20, True, "a.csv"), _event(21, True, "b.csv"), _event(22, False, "c.csv")]
    decision = decide_retrain(events, RetrainCursor(19, None), now=NOW, cooldown_hours=1)
    assert decision.run_key == "drift-21"
    assert decision.cursor.last_storage_id == 22


def test_an_unpartitioned_report_is_named_by_its_storage_id():
    decision = decide_retrain([_event(30, True)], RetrainCursor(), now=NOW, cooldown_hours=0)
    assert decision.run_key == "drift-30"
    assert "report 30" in decision.reason


def test_cooldown_blocks_a_second_request_and_names_the_next_allowed_time():
    last = NOW - 2 * HOUR
    cursor = RetrainCursor(40, last)
    decision = decide_retrain([_event(41, True, "d.csv")], cursor, now=NOW, cooldown_hours=6)
    assert decision.run_key is None
    assert "cooldown" in decision.reason
    assert "2026-03-02 10:00:00 UTC" in decision.reason  # last request
    assert "next allowed 2026-03-02 16:00:00 UTC" in decision.reason  # last + 6 h
    # the report is consumed (it will not fire later) and the last request time is kept
    assert decision.cursor == RetrainCursor(41, last)
    assert decision.event is not None and decision.event.storage_id == 41


@pytest.mark.parametrize(("hours_since", "requested"), [(5.99, False), (6.0, True), (30, True)])
def test_cooldown_ends_after_cooldown_hours(hours_since, requested):
    cursor = RetrainCursor(50, NOW - hours_since * HOUR)
    decision = decide_retrain([_event(51, True)], cursor, now=NOW, cooldown_hours=6)
    assert (decision.run_key == "drift-51") is requested
    assert decision.cursor.last_request_at == (NOW if requested else cursor.last_request_at)


def test_zero_cooldown_allows_back_to_back_requests():
    first = decide_retrain([_event(60, True)], RetrainCursor(), now=NOW, cooldown_hours=0)
    second = decide_retrain([_event(61, True)], first.cursor, now=NOW, cooldown_hours=0)
    assert (first.run_key, second.run_key) == ("drift-60", "drift-61")


def test_on_drift_off_never_requests():
    decision = decide_retrain([_event(70, True, "e.csv")], RetrainCursor(), now=NOW, cooldown_hours=0,
                              enabled=False)
    assert decision.run_key is None
    assert "on_drift is off" in decision.reason and "partition e.csv" in decision.reason
    assert decision.cursor == RetrainCursor(70, None)


def test_cursor_round_trips_through_json():
    cursor = RetrainCursor(123, NOW)
    assert RetrainCursor.from_json(cursor.to_json()) == cursor
    assert RetrainCursor.from_json(None) == RetrainCursor(0, None)
    assert RetrainCursor.from_json("") == RetrainCursor()
