"""`ml-pipelines experiments <pipeline>`: the experiment history, every candidate of every
training run (core.experiments), oldest run first.

For each run: its Dagster run id, when it trained, the metric and folds, the winner (and the
version it packaged, once one exists); then one line per candidate: parameters, the
cross-validated mean ± std, mean fit seconds per fold, latency per row, size, and how it
ended: winner, lost (on the score) or dropped with every reason (over a limit, failed to fit
with its error). `--json` prints the records themselves, for scripts."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from ml_pipelines.cli._common import exit_with, fail
from ml_pipelines.settings import Settings

if TYPE_CHECKING:
    from ml_pipelines.core.experiments import CandidateEntry, ExperimentRecord

PIPELINE = typer.Argument(help="pipeline name", show_default=False)
PARAMS_WIDTH = 32


def _value(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _params(params: dict) -> str:
    return json.dumps(params, sort_keys=True, default=str) if params else "{}"


def _status(candidate: CandidateEntry) -> str:
    if candidate.status == "winner":
        return "winner"
    if candidate.status == "lost":  # its reason says so: "lost on cross-validated <metric>: ..."
        return "; ".join(candidate.reasons)
    return f"{candidate.status}: " + "; ".join(candidate.reasons)


def _score(candidate: CandidateEntry) -> str:
    if candidate.cv_mean is None:
        return "-"
    return f"{candidate.cv_mean:.4f} ± {_value(candidate.cv_std, 4)}"


def run_lines(record: ExperimentRecord, version: str | None = None) -> list[str]:
    """One run: a header line, a column header, and a line per candidate."""
    ended = f"winner {record.winner}" if record.winner else f"selected nothing: {record.error}"
    rows = f", {record.cv_rows} of {record.train_rows} training rows" if record.train_rows else ""
    packaged = f" -> version {version}" if version else ""
    limits = ", ".join(f"{k} {v}" for k, v in sorted(record.limits.items()) if v is not None)
    lines = [
        f"run {record.run_id}  {record.recorded_at}  {record.metric} ({record.cv_folds}-fold{rows})"
        + (f"  limits: {limits}" if limits else "") + f"  {ended}{packaged}",
    ]
    width = max([len("candidate"), *(len(c.label) for c in record.candidates)])
    lines.append(
        f"  {'candidate':<{width}}  {'params':<{PARAMS_WIDTH}}  {'cv mean ± std':<17}  {'fit s':>7}  "
        f"{'ms/row':>8}  {'size MB':>8}  status"
    )
    for c in record.candidates:
        lines.append(
            f"  {c.label:<{width}}  {_params(c.model_params or c.params):<{PARAMS_WIDTH}}  {_score(c):<17}  "
            f"{_value(c.fit_seconds, 2):>7}  {_value(c.latency_ms_per_row, 4):>8}  {_value(c.size_mb, 3):>8}  "
            f"{_status(c)}"
        )
    return lines


def experiments(
    pipeline: Annotated[str, PIPELINE],
    last: Annotated[int | None, typer.Option("--last", min=1, help="only the newest N runs", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="the records as one JSON list, oldest run first")] = False,
) -> None:
    from ml_pipelines.core.experiments import ExperimentLog
    from ml_pipelines.core.layout import registry_for
    from ml_pipelines.core.registry import RegistryError

    try:
        registry = registry_for(Settings.from_env())
        records = ExperimentLog(registry.store).records(pipeline, last)
        # the version a run packaged, when it packaged one (the record is written before packaging)
        versions = {r.trigger.run_id: r.version for r in registry.list_versions(pipeline) if r.trigger.run_id}
    except RegistryError as exc:
        fail(str(exc), stderr=False)
    if as_json:
        print(json.dumps([{**r.to_dict(), "version": versions.get(r.run_id)} for r in records], indent=2))
        return
    if not records:
        print(f"{pipeline}: no training runs recorded")
        exit_with(1)
        return
    blocks = ["\n".join(run_lines(r, versions.get(r.run_id))) for r in records]
    print("\n\n".join(blocks))


def register(app: typer.Typer) -> None:
    app.command(
        "experiments",
        help="every candidate of every training run: params, CV mean ± std, fit time, latency, size, "
        "winner or why it was dropped (--last N, --json)",
    )(experiments)
