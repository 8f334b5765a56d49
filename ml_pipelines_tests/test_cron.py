"""ml_pipelines.cron: the cron check a spec runs at load time accepts only what Dagster's
schedules accept (a cron that Dagster refuses would fail the whole code location)."""

from __future__ import annotations

import random

import pytest
from dagster._utils.schedules import is_valid_cron_string

from ml_pipelines.cron import cron_error

VALID = [
    "0 * * * *", "0 3 * * 1", "*/15 * * * *", "0 0 1 1 *", "0 0 * * 7", "0 9-17 * * mon-fri", "0 0 * jan,jul *",
    "0 0 L * *", "0 0 15-L * *", "0 0 * * 5#2", "0 0 ? * 1", "0 0 1 * ?", "1-5/2 * * * *", "0 0 29 2 *",
    "0 0 30 2,3 *", "@hourly", "@daily", "@DAILY", "@weekly", "@monthly", "@yearly", "@annually", "@midnight",
    " 0  * * * * ",
]
INVALID = {
    "lots": "has 1 fields",
    "* * * *": "has 4 fields",
    "* * * * * *": "has 6 fields",
    "60 * * * *": "minute field '60': 60 is outside 0-59",
    "0 24 * * *": "hour field '24'",
    "0 0 0 * *": "day-of-month field '0'",
    "0 0 * 13 *": "month field '13'",
    "0 0 * * 8": "day-of-week field '8'",
    "*/0 * * * *": "step in '*/0' must be at least 1",
    "1,,2 * * * *": "'' is not a value",
    "? * * * *": "'?' is allowed only as the whole day-of-month or day-of-week field",
    "0 0 * january *": "'january' is not a number or a name",
    "0 0 * * 5#6": "use weekday#n with n from 1 to 5",
    "0 0 * * 1,2#1": "weekday#n cannot be listed with other kinds of items",
    "0 0 L-15 * *": "'L' is not a number",
    "0 0 30 2 *": "day-of-month 30 never occurs in feb",
    "0 0 31 4,6 *": "day-of-month 31 never occurs in apr, jun",
    "@reboot": "unknown macro '@reboot'",
    "R * * * *": "'R' is not a number",
}


@pytest.mark.parametrize("expression", VALID)
def test_valid_cron_is_accepted_here_and_by_dagster(expression):
    assert cron_error(expression) is None
    assert is_valid_cron_string(expression)


@pytest.mark.parametrize("expression", list(INVALID))
def test_invalid_cron_says_which_field_and_why(expression):
    error = cron_error(expression)
    assert error is not None and INVALID[expression] in error, error


def test_everything_accepted_is_accepted_by_dagster():
    """Random expressions from the grammar's pieces, valid and not: none that passes
    here is refused by Dagster."""
    atoms = ["*", "?", "0", "1", "5", "7", "12", "23", "29", "30", "31", "32", "59", "60", "L", "jan", "FEB",
             "mon", "Sun", "R", "-1", "1-5", "5-1", "15-L", "L-15", "*/5", "*/0", "1/2", "1-5/2", "mon-fri",
             "5#2", "mon#1", "1#6", "jan-mar", "0-7", "7-0", "*,1", "1,2", "1,,2", "?/2", "L/2", "1.5", "+1", "007"]
    rng = random.Random(7)
    samples = {" ".join(rng.choice(atoms) for _ in range(5)) for _ in range(8000)}
    accepted = [s for s in samples if cron_error(s) is None]
    assert len(accepted) > 80
    assert [s for s in accepted if not is_valid_cron_string(s)] == []
