"""Acceptance stress test of the production profile: RUNS pipeline runs, at most
WORKERS at once, against a real PostgreSQL instance (docker/dagster.yaml's storage
and concurrency sections) and a real S3 API (moto's server), all on loopback.

Each worker is a process, like a run pod: `python -m ml_pipelines_tests.prod.jobs
varied N SEED` executes the credit_default retrain job (3,000 rows drawn with a
new seed each run, so that each run trains and registers a version; one logistic
regression) N times in a row with ML_PIPELINES_ENV=prod (S3 IO manager, S3
registry, bento exports to S3) and its own scratch directory. Meanwhile the
benchmark polls pg_stat_activity for open connections and the runs table for
runs in progress.

Pass criteria (exit code 1 otherwise): every run succeeds; PostgreSQL holds RUNS
runs in SUCCESS and RUNS RUN_SUCCESS events; the registry holds RUNS whole versions
(every artifact verifies against its checksum), each moved to champion (it beat the
champion by the gate's rule) or to challenger (it met the floor only) exactly once, a
champion that is one of them, and RUNS bento exports; never more than WORKERS runs at once.

    python -m bench.prod_stress [--runs 20] [--workers 4]

Writes bench/results/prod_stress.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS = REPO_ROOT / "bench" / "results" / "prod_stress.json"

for _name, _value in {"DAGSTER_DISABLE_TELEMETRY": "1", "BENTOML_DO_NOT_TRACK": "True",
                      "GX_ANALYTICS_ENABLED": "False"}.items():
    os.environ.setdefault(_name, _value)


class Poller(threading.Thread):
    """Samples, every `interval` seconds, the client connections to the database and
    the runs in progress, from its own connection (not counted)."""

    def __init__(self, dsn: str, database: str, interval: float = 0.05):
        super().__init__(daemon=True)
        import psycopg2

        self.connection = psycopg2.connect(dsn)
        self.connection.autocommit = True
        self.database = database
        self.interval = interval
        self.stop_event = threading.Event()
        self.samples = 0
        self.peak_connections = 0
        self.peak_connections_all = 0
        self.peak_running = 0
        self.running_seen: set[int] = set()

    def run(self) -> None:
        with self.connection.cursor() as cursor:
            while not self.stop_event.is_set():
                cursor.execute(
                    "SELECT count(*) FILTER (WHERE datname = %s), count(*) FROM pg_stat_activity "
                    "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
                    (self.database,),
                )
                to_database, to_cluster = cursor.fetchone()
                self.peak_connections = max(self.peak_connections, to_database)
                self.peak_connections_all = max(self.peak_connections_all, to_cluster)
                try:
                    cursor.execute("SELECT count(*) FROM runs WHERE status = 'STARTED'")
                    running = cursor.fetchone()[0]
                except Exception:  # noqa: BLE001 - the table exists once the instance is initialised
                    running = 0
                self.peak_running = max(self.peak_running, running)
                self.running_seen.add(running)
                self.samples += 1
                self.stop_event.wait(self.interval)

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=10)
        self.connection.close()


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _worker_environment(work: Path, moto, url: str, home: Path, bucket: str, prefix: str) -> dict[str, str]:
    from ml_pipelines_tests.services import s3_environment

    return {
        **os.environ,
        **s3_environment(moto.endpoint),
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_URL": url,
        "ML_PIPELINES_ENV": "prod",
        "ML_PIPELINES_S3_BUCKET": bucket,
        "ML_PIPELINES_S3_PREFIX": prefix,
        "ML_PIPELINES_HOME": str(work / "home"),
        # one native thread per run: WORKERS runs share this machine's cores
        "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
    }


def _run_workers(work: Path, env: dict[str, str], counts: list[int], timeout: float,
                 workers: list[subprocess.Popen]) -> tuple[float, list[list[str]]]:
    """Start one worker process per count (appended to `workers`, so the caller can kill them),
    wait for all; the wall time and each run's reported (run id, status)."""
    started = time.perf_counter()
    logs = []
    for index, count in enumerate(counts):
        scratch = work / f"worker-{index}"
        scratch.mkdir()
        log = open(work / f"worker-{index}.log", "w")  # noqa: SIM115 - closed below
        logs.append(log)
        workers.append(subprocess.Popen(
            # each run draws its own data, so every run trains and registers a version
            [sys.executable, "-m", "ml_pipelines_tests.prod.jobs", "varied", str(count), str(1000 * (index + 1))],
            cwd=REPO_ROOT, env={**env, "TMPDIR": str(scratch)}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        ))
    deadline = time.monotonic() + timeout
    for worker in workers:
        worker.wait(timeout=max(1.0, deadline - time.monotonic()))
    wall = time.perf_counter() - started
    for log in logs:
        log.close()
    reported = []
    for index in range(len(workers)):
        reported += [line.split()[1:] for line in (work / f"worker-{index}.log").read_text().splitlines()
                     if line.startswith("RUN ")]
    return wall, reported


def _postgres_counts(dsn: str) -> dict[str, Any]:
    import dagster as dg
    import psycopg2

    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT status, count(*) FROM runs GROUP BY status")
        run_statuses = dict(cursor.fetchall())
        cursor.execute("SELECT count(*) FROM event_logs WHERE dagster_event_type = %s",
                       (dg.DagsterEventType.RUN_SUCCESS.value,))
        run_success_events = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'")
        materializations = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM event_logs")
        events = cursor.fetchone()[0]
    return {"runs": run_statuses, "run_success_events": run_success_events,
            "asset_materializations": materializations, "event_log_rows": events}


def _run_durations(home: Path) -> list[float]:
    import dagster as dg

    from ml_pipelines_tests.prod.common import JOB

    with dg.DagsterInstance.from_config(str(home)) as instance:
        records = instance.get_run_records(filters=dg.RunsFilter(job_name=JOB))
        return sorted(r.end_time - r.start_time for r in records if r.start_time and r.end_time)


def _registry_state(moto, bucket: str, prefix: str, verify_dir: Path) -> dict[str, Any]:
    """Versions (every artifact fetched, so checked against its checksum), alias moves, bento exports."""
    from ml_pipelines.core.registry import ModelRegistry
    from ml_pipelines.core.storage import S3ObjectStore
    from ml_pipelines_tests.prod.common import PIPELINE
    from ml_pipelines_tests.services import s3_client

    registry = ModelRegistry(S3ObjectStore(bucket, f"{prefix}/registry", client=s3_client(moto.endpoint)))
    versions = [record.version for record in registry.list_versions(PIPELINE)]
    for version in versions:
        registry.fetch_artifacts(PIPELINE, version, verify_dir / version)
    champion_moves = len(registry.alias_history(PIPELINE, "champion"))
    # every version either beat the champion (a champion move) or met the floor only (challenger)
    gated = [m.version for alias in ("champion", "challenger") for m in registry.alias_history(PIPELINE, alias)]
    bentos = S3ObjectStore(bucket, f"{prefix}/bentos", client=s3_client(moto.endpoint)).list(f"{PIPELINE}/")
    return {"versions": versions, "champion": registry.get_alias(PIPELINE, "champion"),
            "champion_moves": champion_moves, "gated": gated, "bentos": len(bentos)}


def _checks(runs: int, workers: list[subprocess.Popen], reported: list[list[str]], pg: dict[str, Any],
            reg: dict[str, Any], peak_running: int, max_workers: int) -> dict[str, bool]:
    versions = reg["versions"]
    return {
        "every worker exited 0": all(w.returncode == 0 for w in workers),
        "every run reported SUCCESS": len(reported) == runs and all(s == ["SUCCESS"] for _, *s in reported),
        "runs in SUCCESS in PostgreSQL": pg["runs"] == {"SUCCESS": runs},
        "RUN_SUCCESS events in PostgreSQL": pg["run_success_events"] == runs,
        "asset materializations in PostgreSQL": pg["asset_materializations"] == 6 * runs,
        "whole registry versions": len(versions) == runs == len(set(versions)),
        "each version moved champion or challenger once": (
            sorted(reg["gated"]) == sorted(versions) and reg["champion_moves"] > 0),
        "champion is a listed version": reg["champion"] in versions,
        "bento exports": reg["bentos"] == runs,
        "at most WORKERS runs at once": peak_running <= max_workers,
    }


def _minmedmax(durations: list[float]) -> dict[str, float | None]:
    if not durations:
        return {"min": None, "median": None, "max": None}
    return {"min": round(durations[0], 1), "median": round(durations[len(durations) // 2], 1),
            "max": round(durations[-1], 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=1800, help="seconds before the workers are killed")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(REPO_ROOT))
    import dagster as dg

    from ml_pipelines_tests.prod.common import write_instance_home
    from ml_pipelines_tests.services import s3_client, start_moto, start_postgres

    work = Path(tempfile.mkdtemp(prefix="ml_pipelines-stress-"))
    print(f"work directory {work}", flush=True)
    load_before = [round(x, 2) for x in os.getloadavg()]
    passed = False
    postgres = start_postgres()
    moto = None
    workers: list[subprocess.Popen] = []
    try:
        moto = start_moto(work / "moto.log")
        bucket, prefix, database = "ml-pipelines-stress", "stress", "dagster_stress"
        s3_client(moto.endpoint).create_bucket(Bucket=bucket)
        home = write_instance_home(work / "dagster_home")
        env = _worker_environment(work, moto, postgres.create_database(database), home, bucket, prefix)
        os.environ.update({k: env[k] for k in ("DAGSTER_PG_URL", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
                                               "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")})
        with dg.DagsterInstance.from_config(str(home)):  # create the schema once, before the workers race to it
            pass

        poller = Poller(postgres.dsn(database), database)
        poller.start()
        wall, reported = _run_workers(work, env, _split(args.runs, args.workers), args.timeout, workers)
        poller.stop()
        pg = _postgres_counts(postgres.dsn(database))
        durations = _run_durations(home)
        reg = _registry_state(moto, bucket, prefix, work / "verify")
        checks = _checks(args.runs, workers, reported, pg, reg, poller.peak_running, args.workers)
        result = {
            "benchmark": "prod_stress",
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": " ".join(["python", "-m", "bench.prod_stress", *(argv if argv is not None else sys.argv[1:])]),
            "runs": args.runs, "workers": args.workers, "rows_per_run": 3000,
            "passed": all(checks.values()), "checks": checks,
            "wall_s": round(wall, 1), "runs_per_minute": round(args.runs / wall * 60, 2),
            "run_duration_s": _minmedmax(durations),
            "peak_runs_in_progress": poller.peak_running,
            "peak_postgres_connections": poller.peak_connections,
            "peak_postgres_connections_cluster": poller.peak_connections_all,
            "pg_stat_activity_samples": poller.samples,
            "postgres": pg,
            "registry": {"versions": len(reg["versions"]), "champion_moves": reg["champion_moves"],
                         "challenger_moves": len(reg["gated"]) - reg["champion_moves"], "bento_exports": reg["bentos"]},
            "machine": {
                "python": platform.python_version(), "cpus": os.cpu_count(),
                "load_average_before": load_before, "load_average_after": [round(x, 2) for x in os.getloadavg()],
                "postgresql": postgres.bindir.parent.name,
                "libraries": {p: metadata.version(p) for p in ("dagster", "dagster-postgres", "dagster-aws", "moto")},
            },
        }
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps({k: result[k] for k in ("passed", "checks", "wall_s", "run_duration_s",
                                                 "peak_runs_in_progress", "peak_postgres_connections")}, indent=2))
        print(f"wrote {RESULTS}")
        passed = result["passed"]
        return 0 if passed else 1
    finally:
        for worker in workers:
            if worker.poll() is None:
                os.killpg(worker.pid, 9)
                worker.wait()
        if moto is not None:
            moto.stop()
        postgres.stop(delete=True)
        if passed:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work} (worker logs, moto log)")


if __name__ == "__main__":
    sys.exit(main())
