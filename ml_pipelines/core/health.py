"""Whether a pipeline needs a human (`ml-pipelines status`): no dagster import.

PipelineHealth holds what the command gathered from the registry and the Dagster
instance; `problems()` names what needs a human, each in one line:

- no champion: nothing has passed the promotion gate, so nothing can be served;
- the last finished run of the pipeline's jobs failed;
- a blocking check fails (the expectation suite, the promotion floor);
- the latest drift report found drift;
- production performance is below its floor (the performance_holds verdict).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime


@dataclass(frozen=True)
class RunFact:
    run_id: str
    job: str
    status: str
    at: float | None  # when it ended (or started, for one in progress), seconds since the epoch


@dataclass(frozen=True)
class CheckFact:
    asset: str
    check: str
    passed: bool
    blocking: bool
    description: str
    at: float


@dataclass(frozen=True)
class DriftFact:
    at: float
    partition: str | None
    drifted: bool
    share_drifted: float | None


@dataclass(frozen=True)
class PerformanceFact:
    at: float
    partition: str | None
    holds: bool
    reason: str


@dataclass(frozen=True)
class PipelineHealth:
    pipeline: str
    champion: str | None = None
    champion_created_at: str | None = None  # ISO 8601, as the registry records it
    last_success: RunFact | None = None
    last_finished: RunFact | None = None
    queued: list[str] = field(default_factory=list)  # run ids
    running: list[str] = field(default_factory=list)
    drift: DriftFact | None = None
    monitored: bool = False  # the spec has production data, so drift reports are expected
    performance: PerformanceFact | None = None
    labelled: bool = False  # the spec has labels, so production performance is measured
    checks: list[CheckFact] = field(default_factory=list)  # the latest evaluation of each check

    def problems(self) -> list[str]:
        found = []
        if self.champion is None:
            found.append("no champion: no model has passed the promotion gate, so none can be served")
        if self.last_finished is not None and self.last_finished.status == "FAILURE":
            found.append(f"the last run failed: {self.last_finished.run_id} ({self.last_finished.job})")
        found += [f"blocking check {c.asset}/{c.check} fails: {c.description}"
                  for c in self.checks if c.blocking and not c.passed]
        if self.drift is not None and self.drift.drifted:
            found.append(f"drift: the latest drift report ({_batch(self.drift.partition)}) found drift")
        if self.performance is not None and not self.performance.holds:
            found.append(f"production performance is below its floor: {self.performance.reason}")
        return found

    def to_json(self, now: float) -> dict:
        data = asdict(self)
        data["champion_age_s"] = self.champion_age_s(now)
        data["problems"] = self.problems()
        data["ok"] = not data["problems"]
        return data

    def champion_age_s(self, now: float) -> float | None:
        if self.champion_created_at is None:
            return None
        return now - datetime.fromisoformat(self.champion_created_at).timestamp()

    def lines(self, now: float) -> list[str]:
        problems = self.problems()
        age = self.champion_age_s(now)
        out = [f"== {self.pipeline}: {'NEEDS A HUMAN' if problems else 'ok'}",
               f"   champion:      {f'{self.champion} (age {_age(age)})' if self.champion else 'none'}",
               f"   last success:  {_run(self.last_success, now)}",
               f"   last finished: {_run(self.last_finished, now)}",
               f"   runs:          {len(self.queued)} queued, {len(self.running)} running",
               f"   drift:         {self._drift_line(now)}",
               f"   performance:   {self._performance_line(now)}"]
        failing = [c for c in self.checks if not c.passed]
        out.append("   checks:        " + ("all passing" if self.checks and not failing else
                                          "none run yet" if not self.checks else
                                          f"{len(failing)} failing"))
        out += [f"     {c.asset}/{c.check} ({'blocking' if c.blocking else 'warns'}) fails: {c.description}"
                for c in failing]
        out += [f"   ! {p}" for p in problems]
        return out

    def _drift_line(self, now: float) -> str:
        if self.drift is None:
            return "no report yet" if self.monitored else "not monitored (no monitoring.production_data)"
        share = f", {self.drift.share_drifted:.0%} of features" if self.drift.share_drifted is not None else ""
        verdict = "DRIFT" if self.drift.drifted else "no drift"
        return f"{verdict}{share} ({_batch(self.drift.partition)}, {_age(now - self.drift.at)} ago)"

    def _performance_line(self, now: float) -> str:
        if self.performance is None:
            return "not measured yet" if self.labelled else "no labels (no monitoring.labels)"
        verdict = "holds" if self.performance.holds else "BELOW ITS FLOOR"
        return f"{verdict}: {self.performance.reason} ({_age(now - self.performance.at)} ago)"


def exit_code(pipelines: list[PipelineHealth]) -> int:
    """1 when any pipeline needs a human, else 0."""
    return 1 if any(p.problems() for p in pipelines) else 0


def _batch(partition: str | None) -> str:
    return f"batch {partition}" if partition else "unpartitioned"


def _run(run: RunFact | None, now: float) -> str:
    if run is None:
        return "none"
    when = f", {_age(now - run.at)} ago" if run.at is not None else ""
    return f"{run.run_id} {run.job} {run.status}{when}"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {seconds}s" if minutes else f"{seconds}s"


def utc_now() -> float:
    return datetime.now(UTC).timestamp()
