"""core.utilisation: usage summed per group against the pods' requests (the waste), and the
suggested `resources` from the measured peaks, on hand-made records with known answers."""

from __future__ import annotations

import pytest

from ml_pipelines.core import usage as u
from ml_pipelines.core.utilisation import (
    UsageRecord,
    cpu_quantity,
    memory_quantity,
    percentile,
    report_text,
    utilisation_report,
)

HOUR = 3600.0


def record(stage: str, *, pipeline: str = "loans", owner: str = "team:risk", wall_s: float = HOUR,
           cpu_s: float = 0.0, peak_cores: float = 0.5, peak_mib: float = 500.0, requests: dict | None = None,
           gpus: int | None = None, gpu_pct: float = 0.0, timestamp: float = 0.0) -> UsageRecord:
    figures = {u.WALL_S: wall_s, u.CPU_S: cpu_s, u.CPU_PEAK_CORES: peak_cores, u.PEAK_RSS_MIB: peak_mib}
    if gpus is not None:
        figures |= {u.GPUS: gpus, u.GPU_UTILISATION_PCT: gpu_pct}
    if requests is not None:
        figures |= u.requested_figures(requests)
    return UsageRecord(pipeline, stage, stage, owner, timestamp, "run", figures)


TRAIN_REQUEST = {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "1"}


def test_used_requested_and_waste_per_stage():
    records = [
        record("train", cpu_s=1800, peak_mib=1000, gpus=1, gpu_pct=50, requests=TRAIN_REQUEST),
        record("train", cpu_s=1800, peak_mib=3000, gpus=1, gpu_pct=50, requests=TRAIN_REQUEST),
        record("monitoring", cpu_s=360, wall_s=HOUR / 2),  # no pod request recorded
    ]
    report = utilisation_report(records, by="stage")
    groups = {g.group: g for g in report.groups}
    train = groups["train"]
    assert (train.steps, train.wall_hours, train.cpu_hours) == (2, 2.0, 1.0)
    assert (train.cpu_hours_requested, train.cpu_hours_wasted) == (4.0, 3.0)
    assert (train.gpu_hours, train.gpu_hours_requested, train.gpu_hours_wasted) == (1.0, 2.0, 1.0)
    assert (train.peak_rss_mib_max, train.memory_requested_mib_max) == (3000, 4096)
    assert train.memory_gib_hours_unused == pytest.approx((3096 + 1096) / 1024)
    monitoring = groups["monitoring"]
    assert (monitoring.steps_with_request, monitoring.cpu_hours, monitoring.cpu_hours_requested) == (0, 0.1, 0.0)
    total = report.total
    assert (total.steps, total.cpu_hours, total.cpu_hours_requested, total.cpu_hours_wasted) == (3, 1.1, 4.0, 3.0)


def test_suggestions_are_p95_peaks_with_headroom_rounded_to_kubernetes_quantities():
    records = [record("train", peak_cores=c, peak_mib=m, gpus=g, requests=TRAIN_REQUEST, timestamp=t)
               for t, (c, m, g) in enumerate([(1.0, 500, 0), (1.2, 700, 1), (3.0, 900, 1)])]
    [suggestion] = utilisation_report(records).suggestions
    # three steps: the p95 is the largest; 3.0 x 1.25 = 3.75 cores -> 3800m; 900 x 1.25 = 1125Mi -> 1152Mi
    assert (suggestion.cpu, suggestion.memory, suggestion.gpu, suggestion.steps) == ("3800m", "1152Mi", 1, 3)
    assert suggestion.requested == {"cpu": 2.0, "memory_mib": 4096.0, "gpu": 1}
    assert suggestion.yaml_line() == 'train: {cpu: "3800m", memory: 1152Mi, gpu: 1}'


def test_no_suggestion_where_no_pod_requested_anything():
    report = utilisation_report([record("monitoring")], by="pipeline")
    assert report.suggestions == []
    assert [g.group for g in report.groups] == ["loans"]


def test_grouping_by_owner_and_pipeline():
    records = [record("train", owner="team:a", pipeline="p1", cpu_s=HOUR),
               record("train", owner="team:b", pipeline="p2", cpu_s=2 * HOUR),
               record("ingest", owner="team:b", pipeline="p2", cpu_s=HOUR)]
    by_owner = {g.group: g.cpu_hours for g in utilisation_report(records, by="owner").groups}
    assert by_owner == {"team:a": 1.0, "team:b": 3.0}
    by_pipeline = {g.group: g.steps for g in utilisation_report(records, by="pipeline").groups}
    assert by_pipeline == {"p1": 1, "p2": 2}
    with pytest.raises(ValueError, match="by must be one of pipeline, owner, stage, got 'team'"):
        utilisation_report(records, by="team")


def test_percentile_is_nearest_rank():
    assert percentile(list(range(1, 21)), 95) == 19
    assert percentile([5.0], 95) == 5.0
    assert percentile([1, 2, 3], 95) == 3
    with pytest.raises(ValueError):
        percentile([], 95)


@pytest.mark.parametrize(("cores", "quantity"), [(2.0, "2"), (0.01, "100m"), (0.0, "100m"), (1.25, "1300m"),
                                                 (0.3, "300m")])
def test_cpu_quantity(cores, quantity):
    assert cpu_quantity(cores) == quantity


@pytest.mark.parametrize(("mib", "quantity"), [(1000, "1Gi"), (1025, "1088Mi"), (0, "64Mi"), (640, "640Mi")])
def test_memory_quantity(mib, quantity):
    assert memory_quantity(mib) == quantity


def test_text_report_names_groups_totals_and_suggestions():
    text = report_text(utilisation_report([record("train", cpu_s=HOUR, requests=TRAIN_REQUEST)]))
    assert text.startswith("step usage by stage, all time (1 steps)")
    assert "\ntrain " in text and "\ntotal " in text
    # one step: 0.5 cores x 1.25 -> 700m, 500Mi x 1.25 -> 640Mi; it held no GPU, so none is suggested
    [line] = [line for line in text.splitlines() if line.startswith("loans ")]
    assert line.split()[1:3] == ["train", "1"]
    assert 'cpu 2, memory 4096Mi, gpu 1' in line and line.endswith('train: {cpu: "700m", memory: 640Mi}')
