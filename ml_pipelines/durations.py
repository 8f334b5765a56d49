"""Durations in specs (`24h`, `30d`), checked when a spec loads (no dagster import, so
spec.py can use it): a positive whole number and one unit, s, m, h, d or w."""

from __future__ import annotations

import re
from datetime import timedelta

UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_DURATION = re.compile(r"^\s*(?P<count>[0-9]+)\s*(?P<unit>[smhdw])\s*$")


def parse_duration(text: str) -> timedelta:
    """`24h` -> timedelta(hours=24). Raises ValueError naming the text for anything else."""
    match = _DURATION.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{text!r} is not a duration: write a whole number and a unit, e.g. 90m, 24h, 30d "
                         f"(units: {', '.join(UNITS)})")
    count = int(match["count"])
    if count == 0:
        raise ValueError(f"{text!r} is not a duration: it must be longer than zero")
    return timedelta(**{UNITS[match["unit"]]: count})
