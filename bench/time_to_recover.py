"""Time to recover: from the moment shifted production batches and their labels land to
the moment a new champion answers requests, with nobody touching anything, under a
real `dagster dev` (webserver + daemon) and a real `bentoml serve` answering a steady
trickle of requests the whole time.

The world is the learning-loop test's (ml_pipelines_tests/learning_world.py):
credit_default with 3,000 source rows, labels from files, a retrain window of two
batches; two shifted batches of 2,000 rows land, each followed a second later by its
labels. Reported: the time to each milestone (drift report, labels joined, retrain
requested, new champion registered, served), roc_auc on a fresh sample of the shifted
world before and after, failed requests during the switch, and, as the baseline from
the same run, the same retrain (same data, same starting champion) materialized
directly in process: time to recover / direct retrain is the price of recovering
unattended (sensor intervals, run queueing, process start-up, the swap).

    python -m bench.time_to_recover
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench._common import print_table, timed, write_results

MILESTONES = ("drift_report", "labels_joined", "retrain_requested", "champion_registered", "served")


def _first_time(instance, asset: str, partitions: list[str]) -> float | None:
    """When every partition has a materialization of the asset (the last of them), or None."""
    from ml_pipelines_tests.learning_world import latest

    records = [latest(instance, asset, p) for p in partitions]
    return max(r.timestamp for r in records) if all(records) else None


def _retrain_requested_at(instance) -> float | None:
    """When a sensor first asked for a retrain (unix seconds), or None."""
    import dagster as dg
    from dagster._core.storage.tags import SENSOR_NAME_TAG

    from ml_pipelines_tests.learning_world import NAME

    records = instance.get_run_records(filters=dg.RunsFilter(job_name=f"{NAME}_retrain_job"))
    times = [r.create_timestamp.timestamp() for r in records if r.dagster_run.tags.get(SENSOR_NAME_TAG)]
    return min(times) if times else None


def _watch(instance, registry, traffic, shifted: list[str], first: str, started: float) -> dict[str, float]:
    """Seconds from the landing to each milestone, polled every half second."""
    from ml_pipelines.core.champion import CHAMPION
    from ml_pipelines_tests.learning_world import NAME, quiet

    seen: dict[str, float] = {}
    deadline = time.time() + 900
    while time.time() < deadline:
        now = time.time()
        drift = _first_time(instance, "drift_report", shifted[:1])
        labels = _first_time(instance, "labels", shifted)
        requested = _retrain_requested_at(instance)
        champion = registry.get_alias(NAME, CHAMPION)
        if drift and "drift_report" not in seen:
            seen["drift_report"] = drift - started
        if labels and "labels_joined" not in seen:
            seen["labels_joined"] = labels - started
        if requested and "retrain_requested" not in seen:
            seen["retrain_requested"] = requested - started
        if champion != first and "champion_registered" not in seen:
            learned = {b.batch for b in registry.get_version(NAME, champion).provenance.batches}
            if set(shifted) <= learned:
                seen["champion_registered"] = now - started
        if "champion_registered" in seen and traffic.served_by(champion) and "served" not in seen:
            seen["served"] = now - started
        if "served" in seen and quiet(instance):
            return seen
        time.sleep(0.5)
    raise SystemExit(f"the loop did not recover within 15 minutes; milestones so far: {seen}")


def _auc(registry, versions: dict[str, str], spec) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score

    from ml_pipelines.core.models import predict
    from ml_pipelines.datasets.credit import generate
    from ml_pipelines_tests.learning_world import NAME

    fresh = generate(rows=5000, seed=999, drift=1.0)  # a sample of the shifted world that never landed
    x, y = fresh.drop(columns=[spec.target]), fresh[spec.target]
    return {role: float(roc_auc_score(y, predict(registry.load_model(NAME, v), x, "classification")[1][:, 1]))
            for role, v in versions.items()}


def _direct_retrain(ml_home: Path, spec, first: str) -> float:
    """The same retrain, by hand: a copy of the registry with the first champion back in place, the
    retrain job in process on a fresh instance; its wall seconds."""
    import dagster as dg

    from ml_pipelines_tests.helpers import materialize, registry_at
    from ml_pipelines_tests.learning_world import NAME

    scratch = Path(tempfile.mkdtemp(prefix="bench-recover-direct-"))
    try:
        copy = scratch / "home"
        shutil.copytree(ml_home, copy)
        registry_at(copy).set_alias(NAME, "champion", first, actor="bench", reason="direct baseline")
        with dg.instance_for_test() as instance:
            result, wall, _ = timed(lambda: materialize(spec, copy, instance))
        if not result.success or registry_at(copy).get_alias(NAME, "champion") == first:
            raise SystemExit(f"the direct retrain did not make a new champion: {result.step_errors()}")
        return wall
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run(work: Path) -> dict[str, Any]:
    import dagster as dg

    from ml_pipelines.core.champion import CHAMPION
    from ml_pipelines.settings import Settings
    from ml_pipelines_tests import REPO_ROOT, servers
    from ml_pipelines_tests.helpers import materialize, registry_at
    from ml_pipelines_tests.learning_world import DEFINITIONS, NAME, Traffic, land, loop_attributes
    from ml_pipelines_tests.specs import INPUTS, make_spec

    dagster_home, ml_home = work / "dagster_home", work / "ml_pipelines_home"
    dagster_home.mkdir()
    ml_home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    attributes = loop_attributes()
    spec = make_spec(**attributes)
    (work / "defs.py").write_text(DEFINITIONS.format(attributes=json.dumps(attributes)))
    env = {"DAGSTER_HOME": str(dagster_home), "ML_PIPELINES_HOME": str(ml_home), "ML_PIPELINES_ENV": "local"}
    os.environ.update(env)  # the benchmark's own process: its Settings read the same homes
    variables = Settings.from_env().variables
    with dg.DagsterInstance.from_config(str(dagster_home)):  # the schema once, before dagster dev races to it
        pass
    port, serve_port = servers.free_port(), servers.free_port()
    with servers.running(
        "dagster dev", [servers.venv_executable("dagster"), "dev", "-f", str(work / "defs.py"), "-d", str(REPO_ROOT),
                        "-h", "127.0.0.1", "-p", str(port)],
        log_path=work / "dagster_dev.log", env=env, ready=f"http://127.0.0.1:{port}/server_info", ready_timeout=180,
        wait=False,
    ) as server, dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        trained = materialize(spec, ml_home, instance)
        if not trained.success:
            raise SystemExit(f"the first champion did not train: {trained.step_errors()}")
        registry = registry_at(ml_home)
        first = registry.get_alias(NAME, CHAMPION)
        with servers.running(
            "ml-pipelines serve", [sys.executable, "-m", "ml_pipelines.cli", "serve", NAME, "--host", "127.0.0.1",
                                   "--port", str(serve_port)],
            log_path=work / "serve.log", env={**env, "ML_PIPELINES_WATCH_SECONDS": "0.5"},
            ready=f"http://127.0.0.1:{serve_port}/readyz", ready_timeout=180,
        ):
            server.wait_ready()
            from ml_pipelines.datasets.credit import generate

            rows = json.loads(generate(rows=50, seed=505)[list(INPUTS)].to_json(orient="records"))
            traffic = Traffic(f"http://127.0.0.1:{serve_port}", rows)
            client = threading.Thread(target=traffic.run, daemon=True)
            client.start()
            started = time.time()
            shifted = [land(spec, variables, drift=1.0, seed=seed) for seed in (402, 403)]
            try:
                milestones = _watch(instance, registry, traffic, shifted, first, started)
            finally:
                traffic.stop.set()
                client.join(timeout=30)
        final = registry.get_alias(NAME, CHAMPION)
    direct = _direct_retrain(ml_home, spec, first)
    return {
        "milestones_s": milestones, "direct_retrain_s": direct,
        "ratio_time_to_recover_vs_direct_retrain": milestones["served"] / direct,
        "roc_auc_on_shifted_world": _auc(registry, {"before": first, "after": final}, spec),
        "requests": len(traffic.answers), "failed_requests": len(traffic.failures()),
        "versions": {"before": first, "after": final},
    }


def main() -> int:
    load_before = [round(x, 2) for x in os.getloadavg()]
    work = Path(tempfile.mkdtemp(prefix="bench-recover-"))
    try:
        result = run(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["load_average_before"] = load_before
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    milestones = result["milestones_s"]
    print_table("time to recover (seconds from the shifted batches landing)", ["milestone", "seconds"],
                [[m, milestones[m]] for m in MILESTONES])
    auc = result["roc_auc_on_shifted_world"]
    print(f"\nroc_auc on a fresh shifted sample: before {auc['before']:.3f}, after {auc['after']:.3f}; "
          f"{result['failed_requests']} failed of {result['requests']} requests during the switch")
    print(f"direct retrain (same data, in process): {result['direct_retrain_s']:.1f}s; time to recover / direct: "
          f"{result['ratio_time_to_recover_vs_direct_retrain']:.2f}x; load average {load_before} before")
    path = write_results("time_to_recover", result)
    print(f"wrote {path}")
    return 0 if result["failed_requests"] == 0 and auc["after"] > auc["before"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
