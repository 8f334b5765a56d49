"""The model registry (core.registry) over an object store: immutable versions,
aliases with history, checksums, trusted loading and atomic writes.

Every test takes the `store` fixture, so each runs against each ObjectStore
implementation: LocalObjectStore, and S3ObjectStore on a real S3 API (moto's
server on loopback, the `s3` fixture from service_fixtures.py). Each `STORES`
entry is a factory plus the Python source that rebuilds the same store in a
subprocess, for the killed-write test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from ml_pipelines.core.model_io import PIPELINE_FILE, UntrustedArtifactError, save_model
from ml_pipelines.core.records import Trigger, VersionRecord
from ml_pipelines.core.registry import ChecksumError, ModelRegistry, RegistryError, library_versions, sha256_bytes
from ml_pipelines.core.storage import LocalObjectStore, ObjectStore, S3ObjectStore
from ml_pipelines_tests import REPO_ROOT


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


def _artifacts(directory: Path, files: dict[str, bytes] | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    files = files or {"model.skops": b"model bytes", "plots/roc_curve.png": b"\x89PNG fake"}
    for name, data in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_bytes(data)
    return directory


def _fields(**overrides) -> dict:
    fields = dict(
        data_version="d" * 16,
        code_version="0.1.0-abc",
        spec_hash="abc",
        model_name="logreg",
        framework="sklearn",
        params={"C": 1.0},
        metrics={"roc_auc": 0.8},
        trigger=Trigger("run-1", "manual"),
    )
    return {**fields, **overrides}


def _register(registry: ModelRegistry, directory: Path, version: str, pipeline: str = "credit", **overrides):
    return registry.register(pipeline, directory, version=version, **_fields(**overrides))


# ------------------------------------------------------------------ versions


def test_register_writes_a_complete_record(registry, tmp_path):
    directory = _artifacts(tmp_path / "a")
    record = _register(registry, directory, "v1", partitions=["2026-01-01"], extra={"gate": {"passed": True}})
    assert record.artifacts == {
        "model.skops": sha256_bytes(b"model bytes"),
        "plots/roc_curve.png": sha256_bytes(b"\x89PNG fake"),
    }
    assert record.libraries == library_versions()
    assert {"python", "numpy", "scikit-learn", "torch", "pandas"} <= set(record.libraries)
    stored = registry.get_version("credit", "v1")
    assert stored == record
    assert stored.trigger == Trigger("run-1", "manual")
    assert stored.partitions == ["2026-01-01"]
    assert [r.version for r in registry.list_versions("credit")] == ["v1"]
    assert registry.pipelines() == ["credit"]


def test_versions_are_immutable(registry, tmp_path):
    _register(registry, _artifacts(tmp_path / "a"), "v1")
    other = _artifacts(tmp_path / "b", {"model.skops": b"something else"})
    with pytest.raises(RegistryError, match="credit version v1 already exists; versions are immutable"):
        _register(registry, other, "v1", model_name="forest")
    # nothing of the second attempt landed
    assert registry.get_version("credit", "v1").model_name == "logreg"
    assert registry.store.get("credit/versions/v1/artifacts/model.skops") == b"model bytes"
    assert len(registry.list_versions("credit")) == 1


def test_versions_list_in_creation_order_and_ids_are_unique(registry, tmp_path):
    directory = _artifacts(tmp_path / "a")
    ids = [registry.new_version_id() for _ in range(50)]
    assert len(set(ids)) == 50
    for version in ("v-b", "v-a", "v-c"):
        _register(registry, directory, version)
    assert [r.version for r in registry.list_versions("credit")] == ["v-b", "v-a", "v-c"]
    assert registry.list_versions("unknown") == []


def test_unknown_version_is_a_registry_error(registry, tmp_path):
    _register(registry, _artifacts(tmp_path / "a"), "v1")
    with pytest.raises(RegistryError, match="credit has no version 'v9'"):
        registry.get_version("credit", "v9")
    with pytest.raises(RegistryError, match="credit has no version 'v9'"):
        registry.fetch_artifacts("credit", "v9", tmp_path / "out")


# ------------------------------------------------------------------ aliases


def test_aliases_and_the_history_of_every_move(registry, tmp_path):
    directory = _artifacts(tmp_path / "a")
    for version in ("v1", "v2", "v3"):
        _register(registry, directory, version)
    assert registry.aliases("credit") == {}
    assert registry.get_alias("credit", "champion") is None

    registry.promote("credit", "v1", actor="run r1", reason="first")
    registry.set_alias("credit", "challenger", "v2", actor="run r2", reason="shadow")
    move = registry.promote("credit", "v3", actor="run r3", reason="better")
    assert (move.alias, move.version, move.previous, move.actor, move.reason) == (
        "champion", "v3", "v1", "run r3", "better"
    )
    assert registry.aliases("credit") == {"champion": "v3", "challenger": "v2"}

    champion_moves = registry.alias_history("credit", "champion")
    assert [(m.previous, m.version, m.actor, m.reason) for m in champion_moves] == [
        (None, "v1", "run r1", "first"),
        ("v1", "v3", "run r3", "better"),
    ]
    everything = registry.alias_history("credit")
    assert [(m.alias, m.version) for m in everything] == [("champion", "v1"), ("challenger", "v2"), ("champion", "v3")]
    assert all(m.moved_at for m in everything)
    # moves are ordered in time
    assert [m.moved_at for m in everything] == sorted(m.moved_at for m in everything)

    # clearing an alias is a recorded move too
    registry.set_alias("credit", "challenger", None, actor="cli:me", reason="done")
    assert registry.aliases("credit") == {"champion": "v3"}
    assert registry.alias_history("credit", "challenger")[-1].previous == "v2"


def test_rollback_moves_the_champion_back_and_is_recorded(registry, tmp_path):
    directory = _artifacts(tmp_path / "a")
    for version in ("v1", "v2"):
        _register(registry, directory, version)
    registry.promote("credit", "v1", actor="run r1", reason="first")
    registry.promote("credit", "v2", actor="run r2", reason="better")

    move = registry.rollback("credit", actor="cli:oncall")
    assert registry.get_alias("credit", "champion") == "v1"
    assert (move.version, move.previous, move.actor, move.reason) == ("v1", "v2", "cli:oncall", "rollback from v2")
    history = registry.alias_history("credit", "champion")
    assert len(history) == 3
    assert history[-1] == move


def test_rollback_needs_an_earlier_champion(registry, tmp_path):
    _register(registry, _artifacts(tmp_path / "a"), "v1")
    with pytest.raises(RegistryError, match="credit has no champion to roll back"):
        registry.rollback("credit", actor="cli:me")
    registry.promote("credit", "v1", actor="run r1", reason="first")
    with pytest.raises(RegistryError, match="champion v1 has no earlier champion to roll back to"):
        registry.rollback("credit", actor="cli:me")
    assert registry.get_alias("credit", "champion") == "v1"


def test_unknown_alias_or_version_is_refused_and_moves_nothing(registry, tmp_path):
    _register(registry, _artifacts(tmp_path / "a"), "v1")
    registry.promote("credit", "v1", actor="run r1", reason="first")
    with pytest.raises(RegistryError, match="unknown alias 'production'; aliases are champion, challenger"):
        registry.set_alias("credit", "production", "v1", actor="cli:me", reason="")
    with pytest.raises(RegistryError, match="credit has no version 'v7'"):
        registry.promote("credit", "v7", actor="cli:me", reason="typo")
    assert registry.get_alias("credit", "champion") == "v1"
    assert len(registry.alias_history("credit")) == 1


# ------------------------------------------------------------------ checksums and trust


def _real_model(directory: Path) -> tuple[Pipeline, pd.DataFrame]:
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200)})
    y = (x["a"] > 0).astype(int)
    model = Pipeline([("model", LogisticRegression())]).fit(x, y)
    save_model(model, directory)
    return model, x


def test_a_registered_model_loads_back_and_predicts_the_same(registry, tmp_path):
    model, x = _real_model(tmp_path / "a")
    _register(registry, tmp_path / "a", "v1")
    loaded = registry.load_model("credit", "v1")
    np.testing.assert_array_equal(loaded.predict_proba(x), model.predict_proba(x))


def test_checksum_is_verified_before_load(registry, store, tmp_path):
    _real_model(tmp_path / "a")
    _register(registry, tmp_path / "a", "v1")
    key = f"credit/versions/v1/artifacts/{PIPELINE_FILE}"
    data = bytearray(store.get(key))
    data[len(data) // 2] ^= 0xFF
    store.put(key, bytes(data))

    with pytest.raises(ChecksumError, match=rf"{PIPELINE_FILE}: checksum mismatch .*refusing to load") as caught:
        registry.load_model("credit", "v1")
    assert store.uri(key) in str(caught.value)
    out = tmp_path / "fetched"
    with pytest.raises(ChecksumError):
        registry.fetch_artifacts("credit", "v1", out)
    assert not (out / PIPELINE_FILE).exists()


class Shady(TransformerMixin, BaseEstimator):
    """A type from outside the trusted packages: skops will write it, the registry must not load it."""

    def fit(self, X, y=None):  # noqa: N803
        return self

    def transform(self, X):  # noqa: N803
        return X


def test_untrusted_skops_content_is_refused(registry, tmp_path):
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"a": rng.normal(size=50)})
    model = Pipeline([("shady", Shady()), ("model", LogisticRegression())]).fit(x, (x["a"] > 0).astype(int))
    directory = tmp_path / "a"
    directory.mkdir()
    sio.dump(model, directory / PIPELINE_FILE)
    _register(registry, directory, "v1")

    with pytest.raises(UntrustedArtifactError, match=r"refuses to load untrusted types .*test_registry\.Shady"):
        registry.load_model("credit", "v1")
    # trusted only when the caller names the package (as a spec that names the estimator does)
    loaded = registry.load_model("credit", "v1", extra_trusted_roots=("ml_pipelines_tests",))
    assert type(loaded[0]).__name__ == "Shady"


# ------------------------------------------------------------------ atomic writes


def test_a_version_without_its_record_is_invisible(registry, store, tmp_path):
    _register(registry, _artifacts(tmp_path / "a"), "v1")
    # what a killed upload leaves: artifacts but no record
    store.put("credit/versions/v2/artifacts/model.skops", b"half")
    store.put("ghost/versions/v1/artifacts/model.skops", b"half")
    assert [r.version for r in registry.list_versions("credit")] == ["v1"]
    assert registry.list_versions("ghost") == []
    assert registry.pipelines() == ["credit"]
    with pytest.raises(RegistryError):
        registry.get_version("credit", "v2")
    with pytest.raises(RegistryError):
        registry.promote("credit", "v2", actor="cli:me", reason="")


def test_an_artifact_named_record_json_is_not_a_version(registry, tmp_path):
    directory = _artifacts(tmp_path / "a", {"model.skops": b"m", "reports/record.json": b"not a version record"})
    record = _register(registry, directory, "v1")
    assert "reports/record.json" in record.artifacts
    assert [r.version for r in registry.list_versions("credit")] == ["v1"]
    assert registry.pipelines() == ["credit"]


ARTIFACT_FILES = 40
ARTIFACT_BYTES = 256 * 1024
MARKER = "FIRST-ARTIFACT-STORED"

WRITER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from ml_pipelines.core.records import Trigger
    from ml_pipelines.core.registry import ModelRegistry
    from ml_pipelines.core.storage import LocalObjectStore, ObjectStore, S3ObjectStore

    root, artifact_dir, version = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    inner = {rebuild}

    class Announcing(ObjectStore):
        # after the first artifact is stored, say so, then keep uploading slowly enough to be killed
        def __init__(self, inner):
            self.inner, self.artifacts = inner, 0
        def put(self, key, data):
            self.inner.put(key, data)
            if "/artifacts/" in key:
                self.artifacts += 1
                if self.artifacts == 1:
                    print("{marker}", flush=True)
                time.sleep(0.05)
        def get(self, key): return self.inner.get(key)
        def exists(self, key): return self.inner.exists(key)
        def list(self, prefix): return self.inner.list(prefix)
        def uri(self, key): return self.inner.uri(key)

    ModelRegistry(Announcing(inner)).register(
        "credit", artifact_dir, version=version, data_version="d", code_version="c", spec_hash="s",
        model_name="big", framework="sklearn", params={{}}, metrics={{}}, trigger=Trigger("killed-run"),
    )
    print("COMMITTED", flush=True)
    """
)


def test_a_registry_write_killed_midway_leaves_no_half_written_version(registry, store, store_kind, tmp_path):
    whole = _register(registry, _artifacts(tmp_path / "small"), "v1")
    registry.promote("credit", "v1", actor="run r1", reason="first")
    big = tmp_path / "big"
    rng = np.random.default_rng(0)
    _artifacts(big, {f"shard-{i:02d}.bin": rng.bytes(ARTIFACT_BYTES) for i in range(ARTIFACT_FILES)})
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(rebuild=store_kind.rebuild, marker=MARKER))

    process = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path), str(big), "v2"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = process.stdout.readline()
        assert line.strip() == MARKER, (line, process.stderr.read() if process.poll() is not None else "")
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL
    assert "COMMITTED" not in process.stdout.read()

    # the upload was really cut mid-way: some artifacts landed, not all, and no record
    landed = store.list("credit/versions/v2/")
    assert 1 <= len(landed) < ARTIFACT_FILES
    assert not any(key.endswith("/record.json") for key in landed)

    # nothing half-written is visible
    assert registry.list_versions("credit") == [whole]
    assert registry.pipelines() == ["credit"]
    assert registry.get_alias("credit", "champion") == "v1"
    with pytest.raises(RegistryError, match="has no version 'v2'"):
        registry.get_version("credit", "v2")
    # no temporary upload files show up as objects
    assert all(not Path(key).name.startswith(".") for key in store.list(""))

    # and a retry of the same version completes and verifies
    retried = registry.register("credit", big, version="v2", **_fields(model_name="big"))
    assert [r.version for r in registry.list_versions("credit")] == ["v1", "v2"]
    assert len(retried.artifacts) == ARTIFACT_FILES
    registry.fetch_artifacts("credit", "v2", tmp_path / "fetched")
    assert (tmp_path / "fetched" / "shard-39.bin").read_bytes() == (big / "shard-39.bin").read_bytes()


def test_record_json_round_trip():
    record = VersionRecord(
        pipeline="p", version="v", created_at="2026-01-01T00:00:00+00:00", data_version="d", code_version="c",
        spec_hash="s", model_name="m", framework="torch", params={"hidden_layers": [8]}, metrics={"rmse": 1.5},
        artifacts={"a": "0" * 64}, libraries={"python": "3.11"},
        trigger=Trigger("r", "sensor", "drift_sensor", "drift", "drift in batch-1.csv"), classes=["a", "b"],
    )
    assert VersionRecord.from_json(record.to_json()) == record
    assert json.loads(record.to_json())["trigger"] == {
        "run_id": "r", "kind": "sensor", "name": "drift_sensor", "reason": "drift", "detail": "drift in batch-1.csv"
    }


def test_local_store_put_is_atomic_and_listing_skips_temporary_files(tmp_path):
    store = LocalObjectStore(tmp_path)
    store.put("p/a.json", b"1")
    (tmp_path / "p" / ".a.json.123.tmp").write_bytes(b"partial")
    assert store.list("p/") == ["p/a.json"]
    with pytest.raises(ValueError, match="escapes the store root"):
        store.put("../outside", b"x")
    store.put("p/a.json", b"2")
    assert store.get("p/a.json") == b"2"
    # the replace left no temporary file behind
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == [".a.json.123.tmp", "a.json"]
