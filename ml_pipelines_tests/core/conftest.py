"""The object stores the registry suite, and the suites built on the registry (snapshots, reproduce,
diff, retention), run on: every test that takes `store` (or `registry`) runs once on each."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from ml_pipelines.core.registry import ModelRegistry
from ml_pipelines.core.storage import LocalObjectStore, ObjectStore, S3ObjectStore


@dataclass(frozen=True)
class StoreKind:
    make: Callable[[Path], ObjectStore]
    # Python source, evaluated in a subprocess with `root` bound to the same Path, that builds an
    # ObjectStore over the same objects
    rebuild: str
    # a fixture the store needs first (a server, and the environment that points at it)
    requires: str | None = None


STORES = {
    "local": StoreKind(lambda root: LocalObjectStore(root / "store"), "LocalObjectStore(root / 'store')"),
    # the bucket comes from ML_PIPELINES_TEST_BUCKET, set by the store fixture; the endpoint and
    # credentials from the standard AWS variables the `s3` fixture sets (inherited by subprocesses)
    "s3": StoreKind(
        lambda root: S3ObjectStore(os.environ["ML_PIPELINES_TEST_BUCKET"], f"registry-tests/{root.name}/store"),
        "S3ObjectStore(os.environ['ML_PIPELINES_TEST_BUCKET'], f'registry-tests/{root.name}/store')",
        requires="s3",
    ),
}


@pytest.fixture(params=sorted(STORES))
def store_kind(request) -> StoreKind:
    return STORES[request.param]


@pytest.fixture
def store(store_kind, tmp_path, request, monkeypatch) -> ObjectStore:
    if store_kind.requires:
        bucket = request.getfixturevalue(store_kind.requires)
        monkeypatch.setenv("ML_PIPELINES_TEST_BUCKET", bucket.name)
    return store_kind.make(tmp_path)


@pytest.fixture
def registry(store) -> ModelRegistry:
    return ModelRegistry(store)
