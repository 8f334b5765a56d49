"""Cron expressions, checked when a spec loads (no dagster import, so spec.py can use it).

Accepted: what Dagster schedules accept, less its rarer extensions. Five fields
(minute hour day-of-month month day-of-week) separated by spaces, or one of the
macros @hourly, @daily, @midnight, @weekly, @monthly, @yearly, @annually. Each
field is a comma-separated list of `*`, a value, or a range `a-b`, each optionally
with a step `/n`. Months and weekdays may be named (jan, mon; any case), weekday 7
is Sunday, `?` means `*` in the day fields, day-of-month may be `L` (the last day,
also as a range end: `15-L`) and day-of-week may be `n#k` (the k-th weekday n of
the month). A day of month that no listed month has (`0 0 30 2 *`) is refused.
Dagster-only extensions such as `R` (random) are refused. ml_pipelines_tests checks
that everything accepted here is accepted by Dagster.
"""

from __future__ import annotations

import re

MACROS = frozenset({"@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually"})
MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


class _Field:
    def __init__(self, name: str, low: int, high: int, names: tuple[str, ...] = (), first_name: int = 0):
        self.name, self.low, self.high = name, low, high
        self.names = {n: first_name + i for i, n in enumerate(names)}


FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day-of-month", 1, 31),
    _Field("month", 1, 12, MONTH_NAMES, first_name=1),
    _Field("day-of-week", 0, 7, DAY_NAMES),
)
_STEP = re.compile(r"^(?P<base>[^/]+)(/(?P<step>[0-9]+))?$")
_DIGITS = re.compile(r"[0-9]+")


def cron_error(expression: str) -> str | None:
    """Why `expression` is not a valid cron expression, or None when it is."""
    text = expression.strip()
    if text.lower() in MACROS:
        return None
    if text.startswith("@"):
        return f"unknown macro {text!r}; use one of {', '.join(sorted(MACROS))}"
    parts = text.split()
    if len(parts) != 5:
        return f"has {len(parts)} fields; cron needs 5 (minute hour day-of-month month day-of-week)"
    values: list[set[int] | None] = []
    for part, field in zip(parts, FIELDS):
        expanded: set[int] | None = set()
        if part == "?" and field.name in ("day-of-month", "day-of-week"):
            values.append(None)
            continue
        items = part.split(",")
        mixed = any("#" in i for i in items) and not all("#" in i for i in items)
        if field.name == "day-of-week" and mixed:
            return f"{field.name} field {part!r}: weekday#n cannot be listed with other kinds of items"
        for item in items:
            error, item_values = _item(item, field)
            if error:
                return f"{field.name} field {part!r}: {error}"
            expanded = None if item_values is None or expanded is None else expanded | item_values
        values.append(expanded)
    return _never_occurs(values[2], values[3])


def _item(item: str, field: _Field) -> tuple[str | None, set[int] | None]:
    """(error, the values the item covers or None when it covers an open set such as `*` or `L`)."""
    match = _STEP.match(item)
    if not match:
        return f"{item!r} is not a value, a range or a step", None
    base, step = match.group("base"), match.group("step")
    if step is not None and int(step) < 1:
        return f"step in {item!r} must be at least 1", None
    if base == "*":
        return None, None
    if base == "?":
        return "'?' is allowed only as the whole day-of-month or day-of-week field", None
    if "#" in base and field.name == "day-of-week":
        return _nth_weekday(base, step, field)
    low_text, dash, high_text = base.partition("-")
    last_allowed = field.name == "day-of-month" and not dash and step is None
    low_error, low = _value(low_text, field, allow_last=last_allowed)
    if low_error:
        return low_error, None
    if low is None or not dash:
        return None, None if low is None or step is not None else {low}
    high_error, high = _value(high_text, field, allow_last=field.name == "day-of-month")
    if high_error:
        return high_error, None
    if high is None or step is not None or high < low:
        return None, None  # open (`15-L`), stepped or wrapping ranges: not needed for the day check
    return None, set(range(low, high + 1))


def _value(text: str, field: _Field, *, allow_last: bool) -> tuple[str | None, int | None]:
    if text == "L" and allow_last:
        return None, None
    if text.lower() in field.names:
        return None, field.names[text.lower()]
    if not _DIGITS.fullmatch(text):
        return f"{text!r} is not a number" + (f" or a name ({', '.join(field.names)})" if field.names else ""), None
    number = int(text)
    if not field.low <= number <= field.high:
        return f"{number} is outside {field.low}-{field.high}", None
    return None, number


def _nth_weekday(base: str, step: str | None, field: _Field) -> tuple[str | None, set[int] | None]:
    day, _, nth = base.partition("#")
    error, _ = _value(day, field, allow_last=False)
    if error or step is not None or not _DIGITS.fullmatch(nth) or not 1 <= int(nth) <= 5:
        return error or f"{base!r}: use weekday#n with n from 1 to 5", None
    return None, None


def _never_occurs(days: set[int] | None, months: set[int] | None) -> str | None:
    if not days or not months:
        return None
    longest = max(DAYS_IN_MONTH[m - 1] for m in months)
    if min(days) > longest:
        names = ", ".join(MONTH_NAMES[m - 1] for m in sorted(months))
        return f"day-of-month {min(days)} never occurs in {names}: the schedule would never run"
    return None
