"""`ml-pipelines audit <pipeline>`: one line per prediction, oldest first."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ml_pipelines.core.layout import LocalLayout
from ml_pipelines.core.prediction_log import read_records


def iter_audit(root: Path, pipeline: str, since: str | None = None):
    directory = root / pipeline
    days = sorted(p.name for p in directory.iterdir() if p.is_dir()) if directory.is_dir() else []
    if since:
        days = [d for d in days if d >= since[:10]]
    for day in days:
        for record in sorted(read_records(root, pipeline, day), key=lambda r: (r["timestamp"], r.get("index", 0))):
            if since and record["timestamp"] < since:
                continue
            yield record


def print_audit(pipeline: str, *, since: str | None = None, limit: int | None = None) -> int:
    home = Path(os.environ.get("ML_PIPELINES_HOME", ".ml_pipelines")).resolve()
    count = 0
    for record in iter_audit(LocalLayout(home).audit, pipeline, since):
        if limit is not None and count >= limit:
            break
        print(
            f"{record['timestamp']} {record['request_id']}#{record.get('index', 0)} "
            f"caller={record.get('caller') or '-'} version={record['model_version']} "
            f"input={json.dumps(record['input'], sort_keys=True)} output={json.dumps(record['output'], sort_keys=True)}"
        )
        count += 1
    if count == 0:
        print(f"no predictions logged for {pipeline}" + (f" since {since}" if since else ""))
    return 0
