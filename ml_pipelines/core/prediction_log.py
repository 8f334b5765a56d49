"""The serving audit log, read back as production data.

Layout: <root>/<pipeline>/<YYYY-MM-DD>/<writer>.jsonl, one JSON object per
prediction: request_id, caller, model_version, timestamp, input (a record), output.
With serving.shadow the challenger's scores are lines of their own, `"shadow": true`,
with the same request_id and index (written after the answer, by the predictor);
readers leave them out unless asked. Serving appends; the `production_data` asset
with `kind: prediction_log` reads a day.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

META_COLUMNS = ("request_id", "index", "caller", "model_version", "timestamp")


def day_dir(root: Path, pipeline: str, day: str) -> Path:
    return root / pipeline / day


def read_records(root: Path, pipeline: str, day: str, *, shadow: bool = False) -> list[dict]:
    """The day's records; shadow scores only when `shadow` is true."""
    records = []
    directory = day_dir(root, pipeline, day)
    for path in sorted(directory.glob("*.jsonl")) if directory.is_dir() else []:
        with path.open() as handle:
            for line_number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    # a writer killed mid-line leaves a torn last line; earlier lines are whole
                    if line.endswith("\n"):
                        raise ValueError(f"{path}:{line_number}: corrupt audit record") from None
                    continue
                if shadow or not record.get("shadow"):
                    records.append(record)
    return records


def iter_audit(root: Path, pipeline: str, since: str | None = None, *, shadow: bool = False) -> Iterator[dict]:
    """Every logged prediction of the pipeline (and shadow score, if asked), oldest first; `since`
    is an ISO date or time (UTC)."""
    directory = root / pipeline
    days = sorted(p.name for p in directory.iterdir() if p.is_dir()) if directory.is_dir() else []
    if since:
        days = [d for d in days if d >= since[:10]]
    for day in days:
        for record in sorted(read_records(root, pipeline, day, shadow=shadow), key=lambda r: (r["timestamp"], r.get("index", 0))):
            if since and record["timestamp"] < since:
                continue
            yield record


def read_prediction_log(root: Path, pipeline: str, day: str) -> pd.DataFrame:
    """One row per prediction: the meta columns, the input fields and `prediction`."""
    records = read_records(root, pipeline, day)
    if not records:
        raise ValueError(f"{day_dir(root, pipeline, day)}: no predictions were logged on {day}")
    rows = [
        {**{k: r.get(k) for k in META_COLUMNS}, **r["input"], "prediction": r["output"].get("prediction")}
        for r in records
    ]
    return pd.DataFrame(rows)
