"""Where capacity goes: the usage figures of many steps (core.usage, as their materializations
carry them) summed per pipeline, owner or stage, set against what their Kubernetes pods
requested, and `resources` values suggested from the measured peaks. Pure: the reader of
the Dagster instance builds the UsageRecords (components/utilisation.py).

Per group:
- CPU-hours used: the steps' CPU seconds; requested: wall time x the pod's CPU request.
- GPU-hours used: wall time x GPUs held x GPU utilisation; requested: wall time x GPUs requested.
- memory: the largest and the p95 peak RSS against the pod's memory request; the waste is
  GiB-hours requested but never resident (wall time x (request - peak)).
- waste = requested - used, over the steps whose pod requested something (the chain's
  stages: `resources.<stage>` or DEFAULT_REQUESTS); the monitoring assets' pods take the
  executor's defaults, which no step records, so they count in "used" only.

Suggested `resources.<stage>` (per pipeline and stage, from every step of that stage in the
window): SUGGEST_PERCENTILE peak x HEADROOM, rounded up to a Kubernetes quantity:
cpu from the busiest second of each step, to 100m (at least 100m); memory from the peak
RSS, to 64Mi (at least 64Mi); gpu the most GPUs any step held memory on.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from ml_pipelines.core import usage as u

GROUPINGS = ("pipeline", "owner", "stage")
HEADROOM = 1.25
SUGGEST_PERCENTILE = 95
CPU_STEP_CORES = 0.1
MEMORY_STEP_MIB = 64
HOUR_S = 3600.0


@dataclass(frozen=True)
class UsageRecord:
    """One step's materialization: where it belongs and its usage/* numbers."""

    pipeline: str
    asset: str
    stage: str  # the spec's resources stage (ingest ... package), or "monitoring"
    owner: str
    timestamp: float
    run_id: str
    figures: Mapping[str, float]

    def figure(self, key: str, default: float = 0.0) -> float:
        value = self.figures.get(key)
        return default if value is None else float(value)

    @property
    def requested(self) -> bool:
        return u.REQUESTED_CPU_CORES in self.figures or u.REQUESTED_MEMORY_MIB in self.figures


@dataclass(frozen=True)
class GroupUsage:
    group: str
    steps: int
    wall_hours: float
    cpu_hours: float
    gpu_hours: float
    peak_rss_mib_max: float
    peak_rss_mib_p95: float
    steps_with_request: int  # the waste figures cover these steps only
    cpu_hours_requested: float
    gpu_hours_requested: float
    memory_requested_mib_max: float | None  # the largest memory request among the steps
    memory_gib_hours_requested: float
    memory_gib_hours_unused: float
    cpu_hours_used_of_requested: float  # CPU-hours of the steps with a request
    gpu_hours_used_of_requested: float

    @property
    def cpu_hours_wasted(self) -> float:
        return self.cpu_hours_requested - self.cpu_hours_used_of_requested

    @property
    def gpu_hours_wasted(self) -> float:
        return self.gpu_hours_requested - self.gpu_hours_used_of_requested

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "cpu_hours_wasted": self.cpu_hours_wasted, "gpu_hours_wasted": self.gpu_hours_wasted}


@dataclass(frozen=True)
class Suggestion:
    """`resources.<stage>` for one pipeline, from the measured peaks, beside what it requests now."""

    pipeline: str
    stage: str
    steps: int
    cpu: str
    memory: str
    gpu: int
    requested: dict[str, Any] = field(default_factory=dict)  # cpu (cores), memory (MiB), gpu as recorded
    measured: dict[str, float] = field(default_factory=dict)  # the peaks the suggestion came from

    def yaml_line(self) -> str:
        gpu = f", gpu: {self.gpu}" if self.gpu else ""
        return f'{self.stage}: {{cpu: "{self.cpu}", memory: {self.memory}{gpu}}}'


@dataclass(frozen=True)
class UtilisationReport:
    by: str
    since: datetime | None
    groups: list[GroupUsage]
    total: GroupUsage
    suggestions: list[Suggestion]

    def to_dict(self) -> dict[str, Any]:
        return {
            "by": self.by,
            "since": self.since.isoformat() if self.since else None,
            "groups": [g.to_dict() for g in self.groups],
            "total": self.total.to_dict(),
            "suggestions": [asdict(s) for s in self.suggestions],
            "rule": suggestion_rule(),
        }


def suggestion_rule() -> str:
    return (f"p{SUGGEST_PERCENTILE} of the steps' peaks x {HEADROOM}, rounded up: cpu (busiest second) to "
            f"{int(CPU_STEP_CORES * 1000)}m, memory (peak RSS) to {MEMORY_STEP_MIB}Mi; gpu: the most GPUs a "
            "step held")


# ---------------------------------------------------------------- arithmetic


def percentile(values: Collection[float], q: float) -> float:
    """The nearest-rank q-th percentile (0 < q <= 100): the smallest value with at least q% of the
    values at or below it; with fewer than 100/(100-q) values, the largest."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def cpu_quantity(cores: float) -> str:
    """Cores rounded up to CPU_STEP_CORES (at least one step), as Kubernetes writes them: 1500m, 2."""
    millis = max(1, math.ceil(round(cores / CPU_STEP_CORES, 6))) * round(CPU_STEP_CORES * 1000)
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def memory_quantity(mib: float) -> str:
    """MiB rounded up to MEMORY_STEP_MIB (at least one step): 640Mi, 2Gi."""
    rounded = max(1, math.ceil(round(mib / MEMORY_STEP_MIB, 6))) * MEMORY_STEP_MIB
    return f"{rounded // 1024}Gi" if rounded % 1024 == 0 else f"{rounded}Mi"


def _gpu_hours(record: UsageRecord) -> float:
    return record.figure(u.WALL_S) * record.figure(u.GPUS) * record.figure(u.GPU_UTILISATION_PCT) / 100 / HOUR_S


def summarize(group: str, records: list[UsageRecord]) -> GroupUsage:
    """The usage of some steps, and of those that requested something, what they requested."""
    peaks = [r.figure(u.PEAK_RSS_MIB) for r in records]
    asked = [r for r in records if r.requested]
    hours = {id(r): r.figure(u.WALL_S) / HOUR_S for r in records}
    memory_requests = [r.figure(u.REQUESTED_MEMORY_MIB) for r in asked if u.REQUESTED_MEMORY_MIB in r.figures]
    return GroupUsage(
        group=group,
        steps=len(records),
        wall_hours=sum(hours.values()),
        cpu_hours=sum(r.figure(u.CPU_S) for r in records) / HOUR_S,
        gpu_hours=sum(_gpu_hours(r) for r in records),
        peak_rss_mib_max=max(peaks, default=0.0),
        peak_rss_mib_p95=percentile(peaks, SUGGEST_PERCENTILE) if peaks else 0.0,
        steps_with_request=len(asked),
        cpu_hours_requested=sum(hours[id(r)] * r.figure(u.REQUESTED_CPU_CORES) for r in asked),
        gpu_hours_requested=sum(hours[id(r)] * r.figure(u.REQUESTED_GPUS) for r in asked),
        memory_requested_mib_max=max(memory_requests) if memory_requests else None,
        memory_gib_hours_requested=sum(hours[id(r)] * r.figure(u.REQUESTED_MEMORY_MIB) for r in asked) / 1024,
        memory_gib_hours_unused=sum(
            hours[id(r)] * max(0.0, r.figure(u.REQUESTED_MEMORY_MIB) - r.figure(u.PEAK_RSS_MIB)) for r in asked
            if u.REQUESTED_MEMORY_MIB in r.figures
        ) / 1024,
        cpu_hours_used_of_requested=sum(r.figure(u.CPU_S) for r in asked) / HOUR_S,
        gpu_hours_used_of_requested=sum(_gpu_hours(r) for r in asked),
    )


def suggest(pipeline: str, stage: str, records: list[UsageRecord]) -> Suggestion:
    """`resources.<stage>` from the measured peaks of one pipeline stage's steps (module docstring)."""
    cpu_peak = percentile([r.figure(u.CPU_PEAK_CORES) for r in records], SUGGEST_PERCENTILE)
    memory_peak = percentile([r.figure(u.PEAK_RSS_MIB) for r in records], SUGGEST_PERCENTILE)
    latest = max(records, key=lambda r: r.timestamp)
    requested = {
        name: latest.figures[key]
        for name, key in (("cpu", u.REQUESTED_CPU_CORES), ("memory_mib", u.REQUESTED_MEMORY_MIB),
                          ("gpu", u.REQUESTED_GPUS))
        if key in latest.figures
    }
    return Suggestion(
        pipeline=pipeline, stage=stage, steps=len(records),
        cpu=cpu_quantity(cpu_peak * HEADROOM),
        memory=memory_quantity(memory_peak * HEADROOM),
        gpu=int(max(r.figure(u.GPUS) for r in records)),
        requested=requested,
        measured={"cpu_peak_cores_p95": cpu_peak, "peak_rss_mib_p95": memory_peak},
    )


GROUP_KEYS: dict[str, Callable[[UsageRecord], str]] = {
    "pipeline": lambda r: r.pipeline,
    "owner": lambda r: r.owner,
    "stage": lambda r: r.stage,
}


def utilisation_report(records: Iterable[UsageRecord], by: str = "stage", since: datetime | None = None
                       ) -> UtilisationReport:
    """Every step's usage summed per `by` (pipeline | owner | stage), the total, and a suggestion for
    every pipeline stage whose pods requested resources."""
    if by not in GROUPINGS:
        raise ValueError(f"by must be one of {', '.join(GROUPINGS)}, got {by!r}")
    records = list(records)
    grouped: dict[str, list[UsageRecord]] = defaultdict(list)
    stages: dict[tuple[str, str], list[UsageRecord]] = defaultdict(list)
    for record in records:
        grouped[GROUP_KEYS[by](record)].append(record)
        if record.requested:
            stages[(record.pipeline, record.stage)].append(record)
    return UtilisationReport(
        by=by,
        since=since,
        groups=[summarize(name, grouped[name]) for name in sorted(grouped)],
        total=summarize("total", records),
        suggestions=[suggest(p, s, stages[(p, s)]) for p, s in sorted(stages)],
    )


# ---------------------------------------------------------------- rendering

USAGE_COLUMNS = ("steps", "wall h", "CPU h", "CPU h req", "CPU h waste", "GPU h", "GPU h req", "GPU h waste",
                 "peak MiB max", "peak MiB p95", "mem req MiB", "mem GiB-h unused")
SUGGESTION_COLUMNS = ("pipeline", "stage", "steps", "requested now", "peak p95", "suggested")


def usage_rows(report: UtilisationReport) -> list[list[Any]]:
    """One row per group and the total; None where no step of the group requested anything."""
    rows = []
    for g in [*report.groups, report.total]:
        asked = g.steps_with_request > 0
        rows.append([
            g.group, g.steps, g.wall_hours, g.cpu_hours,
            g.cpu_hours_requested if asked else None, g.cpu_hours_wasted if asked else None,
            g.gpu_hours, g.gpu_hours_requested if asked else None, g.gpu_hours_wasted if asked else None,
            g.peak_rss_mib_max, g.peak_rss_mib_p95, g.memory_requested_mib_max,
            g.memory_gib_hours_unused if asked else None,
        ])
    return rows


def suggestion_rows(report: UtilisationReport) -> list[list[Any]]:
    rows = []
    for s in report.suggestions:
        now = s.requested
        requested = ", ".join(
            part for part in (
                f"cpu {now['cpu']:g}" if "cpu" in now else "",
                f"memory {now['memory_mib']:g}Mi" if "memory_mib" in now else "",
                f"gpu {now['gpu']:g}" if now.get("gpu") else "",
            ) if part
        )
        measured = f"{s.measured['cpu_peak_cores_p95']:.2f} cores, {s.measured['peak_rss_mib_p95']:.0f}Mi"
        rows.append([s.pipeline, s.stage, s.steps, requested, measured, s.yaml_line()])
    return rows


def text_table(header: Iterable[str], rows: list[list[Any]]) -> list[str]:
    """Aligned plain-text columns; numbers to 3 significant digits (whole from 100 on), '-' for None."""
    cells = [[format_cell(v) for v in row] for row in rows]
    header = list(header)
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    return lines


def format_cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value)


def report_text(report: UtilisationReport) -> str:
    since = f"since {report.since.isoformat(timespec='minutes')}" if report.since else "all time"
    lines = [f"step usage by {report.by}, {since} ({report.total.steps} steps)", ""]
    lines += text_table([report.by, *USAGE_COLUMNS], usage_rows(report))
    lines += ["", "requested and waste cover the steps whose pods request resources (the chain's stages)", ""]
    if report.suggestions:
        lines += [f"suggested resources ({suggestion_rule()}):", ""]
        lines += text_table(SUGGESTION_COLUMNS, suggestion_rows(report))
    return "\n".join(lines)
