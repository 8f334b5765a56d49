"""Fixtures for the production profile: Dagster instances on the test PostgreSQL
cluster built from docker/dagster.yaml, and the prod environment switch pointed at a
fresh bucket on the moto server.

The session-scoped servers themselves (`postgres`: a throwaway cluster from Debian's
binaries; `moto_server`: moto's S3 server in its own process group) and the `s3`
bucket fixture live in ml_pipelines_tests/service_fixtures.py, a plugin loaded by
ml_pipelines_tests/conftest.py, because core/test_registry.py runs its whole suite
against S3 too."""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from ml_pipelines_tests.prod.common import write_instance_home
from ml_pipelines_tests.service_fixtures import S3Bucket
from ml_pipelines_tests.services import PostgresCluster


@dataclass
class PgInstance:
    instance: dg.DagsterInstance
    home: Path
    database: str
    url: str


@pytest.fixture
def pg_instance_factory(postgres: PostgresCluster, tmp_path, monkeypatch) -> Iterator[Callable[..., PgInstance]]:
    """make(sections=..., replace=...) -> a DagsterInstance over a new database on the
    test cluster, from a DAGSTER_HOME whose dagster.yaml is docker/dagster.yaml cut to
    `sections` (storage and concurrency by default). DAGSTER_HOME and DAGSTER_PG_URL
    are set in the environment, so subprocesses find the same instance."""
    made: list[dg.DagsterInstance] = []

    def make(sections: tuple[str, ...] = ("storage", "concurrency"), replace: dict[str, Any] | None = None) -> PgInstance:
        database = f"dagster_{secrets.token_hex(4)}"
        url = postgres.create_database(database)
        home = write_instance_home(tmp_path / f"dagster_home_{database}", sections, replace)
        monkeypatch.setenv("DAGSTER_PG_URL", url)
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        instance = dg.DagsterInstance.from_config(str(home))
        made.append(instance)
        return PgInstance(instance, home, database, url)

    yield make
    for instance in made:
        instance.dispose()


@dataclass
class ProdEnv:
    bucket: S3Bucket
    prefix: str
    scratch: Path

    def key(self, *parts: str) -> str:
        return "/".join([self.prefix, *parts])


@pytest.fixture
def prod_env(s3: S3Bucket, tmp_path, monkeypatch) -> ProdEnv:
    """ML_PIPELINES_ENV=prod on a fresh bucket and prefix. The per-pod scratch space that
    prod_resources() puts under the temp directory (BentoML home, reports) is this
    test's own, as each step pod has its own."""
    prefix = f"prod-{secrets.token_hex(3)}"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setenv("ML_PIPELINES_ENV", "prod")
    monkeypatch.setenv("ML_PIPELINES_S3_BUCKET", s3.name)
    monkeypatch.setenv("ML_PIPELINES_S3_PREFIX", prefix)
    monkeypatch.setenv("ML_PIPELINES_HOME", str(tmp_path / "ml_pipelines_home"))
    monkeypatch.setenv("TMPDIR", str(scratch))  # for subprocesses
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # gettempdir() caches its first answer
    return ProdEnv(s3, prefix, scratch)
