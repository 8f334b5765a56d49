"""Pytest fixtures for the real backing services (see services.py), shared by the
production-profile tests under prod/ and by core/test_registry.py's S3 store.
Registered as a plugin by ml_pipelines_tests/conftest.py."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from ml_pipelines_tests.services import (
    MotoServer,
    PostgresCluster,
    s3_client,
    s3_environment,
    start_moto,
    start_postgres,
)

# variables that would send boto3 somewhere other than the test's endpoint
AWS_OVERRIDES = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE",
                  "AWS_ENDPOINT_URL_S3", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL cluster on 127.0.0.1, deleted at the end of the session."""
    cluster = start_postgres()
    try:
        yield cluster
    finally:
        cluster.stop(delete=True)


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory) -> Iterator[MotoServer]:
    """moto's S3 server in its own process group on 127.0.0.1; stopped by PID."""
    with start_moto(tmp_path_factory.mktemp("moto") / "moto.log") as server:
        yield server


@dataclass
class S3Bucket:
    name: str
    endpoint: str
    client: object  # a boto3 S3 client straight to the server

    def keys(self, prefix: str = "") -> list[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        return sorted(
            item["Key"] for page in paginator.paginate(Bucket=self.name, Prefix=prefix) for item in page.get("Contents", [])
        )

    def get(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.name, Key=key)["Body"].read()


@pytest.fixture
def s3(moto_server, monkeypatch) -> S3Bucket:
    """A new bucket on the moto server (made with the real boto3 client), and the
    standard AWS variables pointing this process, and its children, at the server."""
    for name in AWS_OVERRIDES:
        monkeypatch.delenv(name, raising=False)
    for name, value in s3_environment(moto_server.endpoint).items():
        monkeypatch.setenv(name, value)
    client = s3_client(moto_server.endpoint)
    bucket = f"ml-test-{secrets.token_hex(4)}"
    client.create_bucket(Bucket=bucket)
    return S3Bucket(bucket, moto_server.endpoint, client)
