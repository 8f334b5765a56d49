"""Synthetic consumer-loan applications with a realistic default signal.

`drift` (0 = none, 1 = strong) moves the population the way a recession would:
lower incomes, higher debt ratios, more education loans and more missing incomes;
and it changes what predicts default (a concept shift: see `new_risks`).
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

PURPOSES = ["car", "home", "education", "other"]
HOUSING = ["rent", "own", "mortgage"]


def generate(
    rows: int = 50_000,
    seed: int = 7,
    drift: float = 0.0,
    start_date: str = "2026-01-01",
    days: int = 90,
) -> pd.DataFrame:
    if rows <= 0:
        raise ValueError(f"rows must be positive, got {rows}")
    rng = np.random.default_rng(seed)
    age = np.clip(rng.normal(41, 12, rows), 18, 90).round().astype("int64")
    employment_years = np.clip(rng.gamma(2.0, 3.0, rows) * (age - 17) / 25, 0, age - 17).round(1)
    income = rng.lognormal(mean=10.8 - 0.35 * drift, sigma=0.45, size=rows) * (1 + 0.01 * employment_years)
    dependents = rng.poisson(1.1, rows).astype("int64")
    debt_ratio = np.clip(rng.beta(2 + 1.5 * drift, 5, rows), 0, 1.5)
    credit_lines = rng.poisson(4 + drift, rows).astype("int64")
    purpose_p = np.array([0.35, 0.30, 0.15, 0.20]) * (1 - drift) + np.array([0.2, 0.15, 0.45, 0.2]) * drift
    purpose = rng.choice(PURPOSES, size=rows, p=purpose_p / purpose_p.sum())
    housing = rng.choice(HOUSING, size=rows, p=[0.4, 0.2, 0.4])

    logit = (
        -2.2
        + 3.2 * (debt_ratio - 0.3)
        - 0.9 * (np.log(income) - 10.8)
        - 0.025 * (age - 40)
        - 0.06 * employment_years
        + 0.12 * dependents
        + 0.08 * (credit_lines - 4)
        + np.select([purpose == "education", purpose == "home"], [0.45, -0.35], 0.0)
        + np.where(housing == "rent", 0.25, 0.0)
    )
    # the shifted world: the old risk factors weaken and new ones appear (more credit lines,
    # owning a home, car loans, older applicants), so a model trained before the shift ranks
    # new applications poorly until it learns from labelled ones
    new_risks = (
        0.45 * (credit_lines - 5)
        + np.where(housing == "own", 1.2, 0.0)
        + np.where(purpose == "car", 0.9, 0.0)
        + 0.05 * (age - 40)
        - 0.6
    )
    logit = (1 - 0.7 * drift) * logit + drift * new_risks
    defaulted = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype("int64")

    income_missing = rng.random(rows) < 0.04 + 0.06 * drift
    income = np.where(income_missing, np.nan, income.round(2))
    applied_on = pd.Timestamp(date.fromisoformat(start_date)) + pd.to_timedelta(
        rng.integers(0, days, rows), unit="D"
    )
    return pd.DataFrame(
        {
            "applied_on": applied_on,
            "income": income,
            "age": age,
            "employment_years": employment_years,
            "dependents": dependents,
            "debt_ratio": debt_ratio.round(4),
            "credit_lines": credit_lines,
            "purpose": pd.array(purpose, dtype="str"),
            "home_ownership": pd.array(housing, dtype="str"),
            "defaulted": defaulted,
        }
    )
