"""The learning loop's world, shared by components/test_learning_loop_e2e.py and
bench/time_to_recover.py: the small credit_default spec with labels and a retrain
window, the code location `dagster dev` loads, a client that keeps calling the model
service, and what to ask the Dagster instance while the loop runs."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import httpx
from dagster._core.scheduler.instigation import InstigatorType, TickStatus
from dagster._core.storage.tags import SENSOR_NAME_TAG

from ml_pipelines.core.landing import land_labelled_batch, write_labels
from ml_pipelines.core.retrain_policy import RetrainCursor
from ml_pipelines_tests.specs import NAME, small_credit_attributes

SENSORS = {s: f"{NAME}_{s}_sensor" for s in ("drift", "performance", "labels")}
BATCH_ROWS = 2000

DEFINITIONS = '''\
"""credit_default, small, for the learning loop test (written by test_learning_loop_e2e.py)."""

import json
import os

import dagster as dg

from ml_pipelines.components import build_pipeline_defs
from ml_pipelines.definitions import apply_policies
from ml_pipelines.resources import local_resources
from ml_pipelines.spec import PipelineSpec

ATTRIBUTES = json.loads({attributes!r})


@dg.definitions
def defs() -> dg.Definitions:
    spec = PipelineSpec.model_validate(ATTRIBUTES)
    platform = dg.Definitions(
        resources=local_resources(os.environ["ML_PIPELINES_HOME"]), executor=dg.in_process_executor
    )
    return dg.Definitions.merge(apply_policies(build_pipeline_defs(spec)), platform)
'''


@dataclass
class Traffic:
    """A client that keeps asking the service while the loop runs."""

    url: str
    rows: list[dict[str, Any]]
    answers: list[tuple[int, str | None, str | None]] = field(default_factory=list)  # status, version, request id
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(timeout=30, trust_env=False) as client:
            i = 0
            while not self.stop.is_set():
                body = {"records": [self.rows[i % len(self.rows)]]}
                try:
                    response = client.post(f"{self.url}/predict", json=body)
                    answer = response.json() if response.status_code == 200 else {}
                    self.answers.append((response.status_code, answer.get("model_version"), answer.get("request_id")))
                except httpx.HTTPError as exc:
                    self.answers.append((0, None, str(exc)))
                i += 1
                time.sleep(0.1)

    def failures(self) -> list[tuple]:
        return [a for a in self.answers if a[0] != 200]

    def served_by(self, version: str) -> str | None:
        return next((rid for status, v, rid in reversed(self.answers) if status == 200 and v == version), None)


def loop_attributes() -> dict[str, Any]:
    return small_credit_attributes(
        performance={"metric": "roc_auc", "max_drop": 0.05, "min_rows": 200},
        retrain={"on_drift": True, "on_performance": True, "cooldown_hours": 0, "window": {"batches": 2}},
    )


def ticks(instance: dg.DagsterInstance, sensor: str):
    for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
        if state.instigator_name == sensor:
            return instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=100)
    return []


def skipped_past(instance: dg.DagsterInstance, sensor: str, storage_id: int):
    """The sensor's first skipped tick whose cursor consumed the report `storage_id`."""
    skipped = [t for t in ticks(instance, sensor) if t.status == TickStatus.SKIPPED and t.cursor
               and RetrainCursor.from_json(t.cursor).last_storage_id >= storage_id]
    return min(skipped, key=lambda t: t.timestamp) if skipped else None


def latest(instance: dg.DagsterInstance, asset: str, partition: str):
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey([NAME, asset]), asset_partitions=[partition]), limit=1
    ).records
    return records[0] if records else None


def retrain_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    return [r for r in instance.get_runs(filters=dg.RunsFilter(job_name=f"{NAME}_retrain_job"))
            if r.tags.get(SENSOR_NAME_TAG)]


def quiet(instance: dg.DagsterInstance) -> bool:
    busy = instance.get_runs(filters=dg.RunsFilter(statuses=[
        dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
        dg.DagsterRunStatus.STARTED]))
    return not busy




def land(spec, variables, drift: float, seed: int, rows: int = BATCH_ROWS) -> str:
    """A batch, then (a moment later) its ground truth; the batch's file name."""
    batch = land_labelled_batch(spec, drift=drift, rows=rows, seed=seed, variables=variables)
    time.sleep(1.0)
    write_labels(spec, batch, variables=variables)
    return batch.path.name
