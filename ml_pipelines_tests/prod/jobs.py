"""Reconstructable jobs for runs that execute outside the test process (a run worker
killed with SIGKILL, the stress benchmark's workers) and for re-execution.

    python -m ml_pipelines_tests.prod.jobs {slow|fast|varied} [RUNS] [FIRST_SEED]

executes the credit_default retrain job RUNS times (default 1), one after the other,
against the instance in DAGSTER_HOME, with the prod resources (S3 IO manager,
registry and bento exports; ML_PIPELINES_ENV=prod) and in-process execution: the
production k8s_job_executor needs a cluster. Prints `RUN <run_id> <status>` per run.
`varied` draws each run's data with its own seed (FIRST_SEED, FIRST_SEED + 1, ...), so that
every run trains and registers a version: a retrain on unchanged data makes none.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import dagster as dg
from sklearn.linear_model import LogisticRegression

from ml_pipelines_tests.prod.common import JOB, ROWS, credit_spec, prod_pipeline_defs

SLOW_FIT_MARKER = "ML_PIPELINES_TEST_SLOW_FIT_MARKER"
SLOW_FIT_SECONDS = "ML_PIPELINES_TEST_SLOW_FIT_SECONDS"
SEED_VARIABLE = "ML_PIPELINES_TEST_SEED"


def varied_credit(**params):
    """The credit generator with its seed from ML_PIPELINES_TEST_SEED, set per run by main()."""
    from ml_pipelines.datasets.credit import generate

    return generate(**{**params, "seed": int(os.environ.get(SEED_VARIABLE, params.get("seed", 7)))})


class SlowLogisticRegression(LogisticRegression):
    """LogisticRegression whose fit, when ML_PIPELINES_TEST_SLOW_FIT_MARKER names a file,
    creates that file (training has started) and then sleeps, so a run can be killed
    mid-training. Without the variable it is plain LogisticRegression."""

    def fit(self, X, y, sample_weight=None):  # noqa: N803
        marker = os.environ.get(SLOW_FIT_MARKER)
        if marker:
            Path(marker).touch()
            time.sleep(float(os.environ.get(SLOW_FIT_SECONDS, "600")))
        return super().fit(X, y, sample_weight=sample_weight)


# not __name__: run as `python -m`, this module is __main__, and Dagster re-imports it from its file
# as `jobs`, a name outside the trusted modules that a spec's dotted paths must stay within
MODULE = "ml_pipelines_tests.prod.jobs"


def _job(estimator: str) -> dg.JobDefinition:
    defs = prod_pipeline_defs(credit_spec(estimator=estimator), executor=dg.in_process_executor)
    return defs.resolve_job_def(JOB)


def slow_retrain_job() -> dg.JobDefinition:
    return _job(f"{MODULE}.SlowLogisticRegression")


def retrain_job() -> dg.JobDefinition:
    return _job("sklearn.linear_model.LogisticRegression")


def varied_retrain_job() -> dg.JobDefinition:
    source = {"kind": "synthetic", "generator": f"{MODULE}:varied_credit", "params": {"rows": ROWS}}
    defs = prod_pipeline_defs(credit_spec(source=source), executor=dg.in_process_executor)
    return defs.resolve_job_def(JOB)


def main(argv: list[str]) -> int:
    kind = argv[0] if argv else "fast"
    runs = int(argv[1]) if len(argv) > 1 else 1
    first_seed = int(argv[2]) if len(argv) > 2 else 1000
    factory = {"slow": slow_retrain_job, "varied": varied_retrain_job}.get(kind, retrain_job)
    job = dg.reconstructable(factory)
    failed = 0
    with dg.DagsterInstance.get() as instance:
        for run in range(runs):
            os.environ[SEED_VARIABLE] = str(first_seed + run)  # a test harness may set its own process's variables
            with dg.execute_job(job, instance=instance, tags={"ml_pipelines/trigger": "cli"}) as result:
                print(f"RUN {result.run_id} {'SUCCESS' if result.success else 'FAILURE'}", flush=True)
                failed += not result.success
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
