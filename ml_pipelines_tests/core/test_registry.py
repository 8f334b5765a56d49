"""The model registry (core.registry) over an object store: immutable versions,
aliases with history, checksums, trusted loading and atomic writes.

Every test takes the `store` fixture (core/conftest.py), so each runs against each
ObjectStore implementation: LocalObjectStore, and S3ObjectStore on a real S3 API
(moto's server on loopback, the `s3` fixture from service_fixtures.py). Each
`STORES` entry is a factory plus the Python source that rebuilds the same store in
a subprocess, for the killed-write test.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from ml_pipelines.core.model_io import PIPELINE_FILE, UntrustedArtifactError, save_model
from ml_pipelines.core.records import ServingPackage, Trigger, VersionRecord
from ml_pipelines.core.registry import ChecksumError, ModelRegistry, RegistryError, library_versions, sha256_bytes
from ml_pipelines.core.storage import LocalObjectStore, ObjectStore, S3ObjectStore
from ml_pipelines_tests import REPO_ROOT


def _artifacts(directory: Path, files: dict[str, bytes] | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    files = files or {"model.skops": b"model bytes", "plots/roc_curve.png": b"\x89PNG fake"}
    for name, data in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_bytes(data)
    return directory


def vid(n: int) -> str:
    """A version id of the registry's own shape (new_version_id's); vid(1) sorts before vid(2)."""
    return f"20260101-000000-{n:06x}"


V1, V2, V3, V7, V9 = vid(1), vid(2), vid(3), vid(7), vid(9)


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


def _package(pipeline: str, version: str) -> ServingPackage:
    return ServingPackage(f"{pipeline}:{version}", f"{pipeline.replace('_', '-')}:{version}")


def _register(registry: ModelRegistry, directory: Path, version: str, pipeline: str = "credit", **overrides):
    """A committed version; servable (it names a package) unless package=None is passed."""
    overrides.setdefault("package", _package(pipeline, version))
    return registry.register(pipeline, directory, version=version, **_fields(**overrides))


# ------------------------------------------------------------------ versions


def test_register_writes_a_complete_record(registry, tmp_path):
    directory = _artifacts(tmp_path / "a")
    record = _register(registry, directory, V1, partitions=["2026-01-01"], extra={"gate": {"passed": True}})
    assert record.artifacts == {
        "model.skops": sha256_bytes(b"model bytes"),
        "plots/roc_curve.png": sha256_bytes(b"\x89PNG fake"),
    }
    assert record.libraries == library_versions()
    assert {"python", "numpy", "scikit-learn", "torch", "pandas"} <= set(record.libraries)
    stored = registry.get_version("credit", V1)
    assert stored == record
    assert stored.trigger == Trigger("run-1", "manual")
    assert stored.partitions == ["2026-01-01"]
    assert [r.version for r in registry.list_versions("credit")] == [V1]
    assert registry.pipelines() == ["credit"]


def test_versions_are_immutable(registry, tmp_path):
    _register(registry, _artifacts(tmp_path / "a"), V1)
    other = _artifacts(tmp_path / "b", {"model.skops": b"something else"})
    with pytest.raises(RegistryError, match=f"credit version {V1} already exists; versions are immutable"):
        _register(registry, other, V1, model_name="forest")
    # nothing of the second attempt landed
    assert registry.get_version("credit", V1).model_name == "logreg"
    assert registry.store.get(f"credit/versions/{V1}/artifacts/model.skops") == b"model bytes"
    assert len(registry.list_versions("credit")) == 1


def test_versions_list_in_creation_order_and_ids_are_unique(registry, tmp_path):
    directory = _artifacts(tmp_path / "a")
    ids = [registry.new_version_id() for _ in range(50)]
    assert len(set(ids)) == 50
    for version in (vid(0xB), vid(0xA), vid(0xC)):
        _register(registry, directory, version)
    assert [r.version for r in registry.list_versions("credit")] == [vid(0xB), vid(0xA), vid(0xC)]
    assert registry.list_versions("unknown") == []


def test_unknown_version_is_a_registry_error(registry, tmp_path):
    _register(registry, _artifacts(tmp_path / "a"), V1)
    with pytest.raises(RegistryError, match=f"credit has no version '{V9}'"):
        registry.get_version("credit", V9)
    with pytest.raises(RegistryError, match=f"credit has no version '{V9}'"):
        registry.fetch_artifacts("credit", V9, tmp_path / "out")


# ------------------------------------------------------------------ aliases


def test_aliases_and_the_history_of_every_move(registry, tmp_path):
    directory = _artifacts(tmp_path / "a")
    for version in (V1, V2, V3):
        _register(registry, directory, version)
    assert registry.aliases("credit") == {}
    assert registry.get_alias("credit", "champion") is None

    registry.promote("credit", V1, actor="run r1", reason="first")
    registry.set_alias("credit", "challenger", V2, actor="run r2", reason="shadow")
    move = registry.promote("credit", V3, actor="run r3", reason="better")
    assert (move.alias, move.version, move.previous, move.actor, move.reason) == (
        "champion", V3, V1, "run r3", "better"
    )
    assert registry.aliases("credit") == {"champion": V3, "challenger": V2}

    champion_moves = registry.alias_history("credit", "champion")
    assert [(m.previous, m.version, m.actor, m.reason) for m in champion_moves] == [
        (None, V1, "run r1", "first"),
        (V1, V3, "run r3", "better"),
    ]
    everything = registry.alias_history("credit")
    assert [(m.alias, m.version) for m in everything] == [("champion", V1), ("challenger", V2), ("champion", V3)]
    assert all(m.moved_at for m in everything)
    # moves are ordered in time
    assert [m.moved_at for m in everything] == sorted(m.moved_at for m in everything)

    # clearing an alias is a recorded move too
    registry.set_alias("credit", "challenger", None, actor="cli:me", reason="done")
    assert registry.aliases("credit") == {"champion": V3}
    assert registry.alias_history("credit", "challenger")[-1].previous == V2


def test_rollback_moves_the_champion_back_and_is_recorded(registry, tmp_path):
    directory = _artifacts(tmp_path / "a")
    for version in (V1, V2):
        _register(registry, directory, version)
    registry.promote("credit", V1, actor="run r1", reason="first")
    registry.promote("credit", V2, actor="run r2", reason="better")

    move = registry.rollback("credit", actor="cli:oncall")
    assert registry.get_alias("credit", "champion") == V1
    assert (move.version, move.previous, move.actor, move.reason) == (V1, V2, "cli:oncall", f"rollback from {V2}")
    history = registry.alias_history("credit", "champion")
    assert len(history) == 3
    assert history[-1] == move


def test_rollback_needs_an_earlier_champion(registry, tmp_path):
    _register(registry, _artifacts(tmp_path / "a"), V1)
    with pytest.raises(RegistryError, match="credit has no champion to roll back"):
        registry.rollback("credit", actor="cli:me")
    registry.promote("credit", V1, actor="run r1", reason="first")
    with pytest.raises(RegistryError, match=f"champion {V1} has no earlier champion to roll back to"):
        registry.rollback("credit", actor="cli:me")
    assert registry.get_alias("credit", "champion") == V1


def test_unknown_alias_or_version_is_refused_and_moves_nothing(registry, tmp_path):
    _register(registry, _artifacts(tmp_path / "a"), V1)
    registry.promote("credit", V1, actor="run r1", reason="first")
    with pytest.raises(RegistryError, match="unknown alias 'production'; aliases are champion, challenger"):
        registry.set_alias("credit", "production", V1, actor="cli:me", reason="")
    with pytest.raises(RegistryError, match=f"credit has no version '{V7}'"):
        registry.promote("credit", V7, actor="cli:me", reason="typo")
    assert registry.get_alias("credit", "champion") == V1
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
    _register(registry, tmp_path / "a", V1)
    loaded = registry.load_model("credit", V1)
    np.testing.assert_array_equal(loaded.predict_proba(x), model.predict_proba(x))


def test_checksum_is_verified_before_load(registry, store, tmp_path):
    _real_model(tmp_path / "a")
    _register(registry, tmp_path / "a", V1)
    key = f"credit/versions/{V1}/artifacts/{PIPELINE_FILE}"
    data = bytearray(store.get(key))
    data[len(data) // 2] ^= 0xFF
    store.put(key, bytes(data))

    with pytest.raises(ChecksumError, match=rf"{PIPELINE_FILE}: checksum mismatch .*refusing to load") as caught:
        registry.load_model("credit", V1)
    assert store.uri(key) in str(caught.value)
    out = tmp_path / "fetched"
    with pytest.raises(ChecksumError):
        registry.fetch_artifacts("credit", V1, out)
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
    _register(registry, directory, V1)

    with pytest.raises(UntrustedArtifactError, match=r"refuses to load untrusted types .*test_registry\.Shady"):
        registry.load_model("credit", V1)
    # trusted only when the caller names the package (as a spec that names the estimator does)
    loaded = registry.load_model("credit", V1, extra_trusted_roots=("ml_pipelines_tests",))
    assert type(loaded[0]).__name__ == "Shady"


# ------------------------------------------------------------------ atomic writes


def test_a_version_without_its_record_is_invisible(registry, store, tmp_path):
    _register(registry, _artifacts(tmp_path / "a"), V1)
    # what a killed upload leaves: artifacts but no record
    store.put(f"credit/versions/{V2}/artifacts/model.skops", b"half")
    store.put(f"ghost/versions/{V1}/artifacts/model.skops", b"half")
    assert [r.version for r in registry.list_versions("credit")] == [V1]
    assert registry.list_versions("ghost") == []
    assert registry.pipelines() == ["credit"]
    with pytest.raises(RegistryError):
        registry.get_version("credit", V2)
    with pytest.raises(RegistryError):
        registry.promote("credit", V2, actor="cli:me", reason="")


def test_an_artifact_named_record_json_is_not_a_version(registry, tmp_path):
    directory = _artifacts(tmp_path / "a", {"model.skops": b"m", "reports/record.json": b"not a version record"})
    record = _register(registry, directory, V1)
    assert "reports/record.json" in record.artifacts
    assert [r.version for r in registry.list_versions("credit")] == [V1]
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
        def put_if_absent(self, key, data): return self.inner.put_if_absent(key, data)
        def get(self, key): return self.inner.get(key)
        def delete(self, key): return self.inner.delete(key)
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
    whole = _register(registry, _artifacts(tmp_path / "small"), V1)
    registry.promote("credit", V1, actor="run r1", reason="first")
    big = tmp_path / "big"
    rng = np.random.default_rng(0)
    _artifacts(big, {f"shard-{i:02d}.bin": rng.bytes(ARTIFACT_BYTES) for i in range(ARTIFACT_FILES)})
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(rebuild=store_kind.rebuild, marker=MARKER))

    process = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path), str(big), V2],
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
    landed = store.list(f"credit/versions/{V2}/")
    assert 1 <= len(landed) < ARTIFACT_FILES
    assert not any(key.endswith("/record.json") for key in landed)

    # nothing half-written is visible
    assert registry.list_versions("credit") == [whole]
    assert registry.pipelines() == ["credit"]
    assert registry.get_alias("credit", "champion") == V1
    with pytest.raises(RegistryError, match=f"has no version '{V2}'"):
        registry.get_version("credit", V2)
    # no temporary upload files show up as objects
    assert all(not Path(key).name.startswith(".") for key in store.list(""))

    # and a retry of the same version completes and verifies
    retried = registry.register("credit", big, version=V2, **_fields(model_name="big"))
    assert [r.version for r in registry.list_versions("credit")] == [V1, V2]
    assert len(retried.artifacts) == ARTIFACT_FILES
    registry.fetch_artifacts("credit", V2, tmp_path / "fetched")
    assert (tmp_path / "fetched" / "shard-39.bin").read_bytes() == (big / "shard-39.bin").read_bytes()


# ------------------------------------------------------------------ serialized alias moves

MOVER = textwrap.dedent(
    """
    import json, os, random, sys, time
    from pathlib import Path
    from ml_pipelines.core.registry import ModelRegistry, RegistryError
    from ml_pipelines.core.storage import LocalObjectStore, S3ObjectStore

    root, go, worker, moves = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    versions = sys.argv[5:]
    registry = ModelRegistry({rebuild})
    rng = random.Random(worker)
    print("READY", flush=True)
    while not go.exists():
        time.sleep(0.005)
    for _ in range(moves):
        try:
            if rng.random() < 0.35:
                move = registry.rollback("credit", actor=worker)
            else:
                move = registry.promote("credit", rng.choice(versions), actor=worker, reason="race")
        except RegistryError as exc:  # a rollback with no earlier champion
            print(json.dumps({{"refused": str(exc)}}), flush=True)
            continue
        print(json.dumps({{"sequence": move.sequence, "version": move.version, "previous": move.previous}}), flush=True)
    """
)
WORKERS = 3
MOVES_EACH = 45


def replay_champions(moves) -> list[str]:
    """The rollback stack's rule, replayed over a whole history: what each rollback must have chosen."""
    promoted: list[str] = []
    for move in moves:
        if move.rollback:
            assert len(promoted) >= 2, f"move {move.sequence} rolled back with no earlier champion"
            promoted.pop()
            assert move.version == promoted[-1], f"rollback {move.sequence} went to {move.version}"
        else:
            promoted.append(move.version)
    return promoted


def test_alias_moves_from_racing_processes_form_one_unbroken_chain(registry, store_kind, tmp_path):
    versions = [vid(n) for n in range(1, 6)]
    for version in versions:
        _register(registry, _artifacts(tmp_path / "a"), version)
    registry.promote("credit", versions[0], actor="setup", reason="first")
    script = tmp_path / "mover.py"
    script.write_text(MOVER.format(rebuild=store_kind.rebuild))
    go = tmp_path / "go"
    workers = [
        subprocess.Popen(
            [sys.executable, str(script), str(tmp_path), str(go), f"worker-{i}", str(MOVES_EACH), *versions],
            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in range(WORKERS)
    ]
    try:
        for worker in workers:
            assert worker.stdout.readline().strip() == "READY", worker.stderr.read()
        go.touch()
        outputs = [worker.communicate(timeout=600) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    assert [w.returncode for w in workers] == [0] * WORKERS, [err[-2000:] for _, err in outputs]
    made = [json.loads(line) for out, _ in outputs for line in out.splitlines()]
    made = [m for m in made if "sequence" in m]
    assert len(made) >= WORKERS * MOVES_EACH // 2

    history = registry.alias_history("credit", "champion")
    # every move a worker was told it made is in the history, once, as it was told
    assert len(history) == len(made) + 1
    assert sorted(m["sequence"] for m in made) == list(range(2, len(history) + 1))
    by_sequence = {m.sequence: m for m in history}
    assert all((by_sequence[m["sequence"]].version, by_sequence[m["sequence"]].previous) == (m["version"], m["previous"])
               for m in made)
    # one unbroken chain: numbered 1..n, each move's previous is what the move before it set
    assert [m.sequence for m in history] == list(range(1, len(history) + 1))
    assert history[0].previous is None
    broken = [m.sequence for before, m in itertools.pairwise(history) if m.previous != before.version]
    assert broken == [], f"{len(broken)} of {len(history)} moves have a previous that is not the move before"
    assert replay_champions(history)[-1] == registry.get_alias("credit", "champion") == history[-1].version
    assert sum(m.rollback for m in history) > 0


def test_a_move_committed_without_its_pointer_is_still_the_newest(registry, store, tmp_path):
    """What a writer killed between the log entry and the pointer leaves: the log wins."""
    for version in (V1, V2, V3):
        _register(registry, _artifacts(tmp_path / "a"), version)
    registry.promote("credit", V1, actor="r1", reason="first")
    stale_pointer = store.get("credit/aliases/champion.json")
    registry.promote("credit", V2, actor="r2", reason="second")
    store.put("credit/aliases/champion.json", stale_pointer)  # as if the second writer died before it
    assert registry.get_alias("credit", "champion") == V2
    move = registry.promote("credit", V3, actor="r3", reason="third")
    assert (move.sequence, move.previous) == (3, V2)
    assert registry.rollback("credit", actor="oncall").version == V2


def test_a_history_written_before_numbering_reads_back_and_continues(registry, store, tmp_path):
    """Registries from before the numbering: moves at alias_history/<time>-<alias>.json, pointers without a
    sequence. They list first, the next move continues from the pointer, rollbacks reach back into them."""
    for version in (V1, V2, V3):
        _register(registry, _artifacts(tmp_path / "a"), version)
    for stamp, version, previous in (("20260101T000000000000-aaaa", V1, None), ("20260102T000000000000-bbbb", V2, V1)):
        move = {"pipeline": "credit", "alias": "champion", "version": version, "previous": previous,
                "moved_at": f"2026-01-0{stamp[7]}T00:00:00+00:00", "actor": "old", "reason": "old", "rollback": False}
        store.put(f"credit/alias_history/{stamp}-champion.json", json.dumps(move).encode())
        store.put("credit/aliases/champion.json", json.dumps(move).encode())
    assert registry.get_alias("credit", "champion") == V2
    promoted = registry.promote("credit", V3, actor="new", reason="new")
    assert (promoted.sequence, promoted.previous) == (1, V2)
    assert [(m.sequence, m.version) for m in registry.alias_history("credit", "champion")] == [
        (None, V1), (None, V2), (1, V3)
    ]
    assert registry.rollback("credit", actor="oncall").version == V2
    assert registry.rollback("credit", actor="oncall").version == V1
    with pytest.raises(RegistryError, match="no earlier champion"):
        registry.rollback("credit", actor="oncall")


# ------------------------------------------------------------------ names, ids and incomplete versions


class Recording(ObjectStore):
    """A store that records every key it is asked about, over another store."""

    def __init__(self, inner: ObjectStore):
        self.inner, self.keys = inner, []

    def _seen(self, key: str) -> str:
        self.keys.append(key)
        return key

    def put(self, key, data): return self.inner.put(self._seen(key), data)
    def put_if_absent(self, key, data): return self.inner.put_if_absent(self._seen(key), data)
    def get(self, key): return self.inner.get(self._seen(key))
    def delete(self, key): return self.inner.delete(self._seen(key))
    def exists(self, key): return self.inner.exists(self._seen(key))
    def list(self, prefix): return self.inner.list(self._seen(prefix))
    def uri(self, key): return self.inner.uri(key)


BAD_CALLS = {
    "list outside the root": lambda r: r.list_versions("/etc"),
    "list with dots": lambda r: r.list_versions(".."),
    "show a path": lambda r: r.get_version("credit", "../v"),
    "promote another pipeline's version": lambda r: r.promote("credit", f"../../other/versions/{V1}", actor="a", reason=""),
    "promote into a path": lambda r: r.promote("../other", V1, actor="a", reason=""),
    "rollback a path": lambda r: r.rollback("credit/../other", actor="a"),
    "history of a path": lambda r: r.alias_history("/etc"),
    "alias of a bad name": lambda r: r.get_alias("Credit", "champion"),
    "a newline": lambda r: r.get_version("credit", f"{V1}\n"),
    "artifacts of a path": lambda r: r.fetch_artifacts("credit", "..", Path("/tmp/never-written")),
    "stage over a path": lambda r: r.register("credit", Path("/nonexistent"), version="../../x"),
    "drift of a path": lambda r: r.drift_history("credit", "../../etc"),
    "card of a path": lambda r: r.card_key("credit", "../x", "html"),
}


@pytest.mark.parametrize("call", BAD_CALLS.values(), ids=BAD_CALLS.keys())
def test_bad_names_and_ids_are_refused_before_any_key_is_touched(store, call):
    recording = Recording(store)
    with pytest.raises(RegistryError, match=r"^(pipeline name|version id) .* is not valid: ") as refused:
        call(ModelRegistry(recording))
    assert "\n" not in str(refused.value)
    assert recording.keys == []


def test_junk_beside_pipelines_is_not_a_pipeline(registry, store, tmp_path):
    _register(registry, _artifacts(tmp_path / "a"), V1)
    store.put(f"Not-A-Name/versions/{V1}/record.json", b"{}")
    assert registry.pipelines() == ["credit"]


def test_promote_refuses_a_version_whose_record_names_no_bento(registry, tmp_path):
    """Versions written before packaging was atomic: a record, but nothing says a bento exists."""
    _register(registry, _artifacts(tmp_path / "a"), V1)
    _register(registry, _artifacts(tmp_path / "a"), V2, package=None)
    registry.promote("credit", V1, actor="r1", reason="first")
    for alias in ("champion", "challenger"):
        with pytest.raises(RegistryError, match=rf"^credit version {V2} is incomplete: its record names no BentoML "
                                                r"model or bento .* cannot be served"):
            registry.set_alias("credit", alias, V2, actor="cli:me", reason="")
    assert registry.aliases("credit") == {"champion": V1}
    assert len(registry.alias_history("credit")) == 1


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
    for prefix in ("/etc", "../", "p/../../"):
        with pytest.raises(ValueError, match="escapes the store root"):
            store.list(prefix)
    store.put("p/a.json", b"2")
    assert store.get("p/a.json") == b"2"
    # the replace left no temporary file behind
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == [".a.json.123.tmp", "a.json"]


def test_the_test_s3_server_lets_exactly_one_of_two_racing_creates_win(monkeypatch):
    """ml_pipelines_tests.moto_server: plain moto lets two creates of one key that overlap both
    win (its lookup slowed here so that they do); the test server, as S3, lets exactly one."""
    import boto3
    import moto
    from moto.s3.models import S3Backend
    from moto.s3.responses import S3Response

    from ml_pipelines_tests import moto_server

    lookup = S3Backend.get_object

    def slow_lookup(self, *args, **kwargs):
        found = lookup(self, *args, **kwargs)
        time.sleep(0.2)  # both creates see the key absent before either writes it
        return found

    monkeypatch.setattr(S3Backend, "get_object", slow_lookup)
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):  # moto's in-process mock answers AWS's own URLs
        monkeypatch.delenv(name, raising=False)

    def race(key: str) -> list[bool]:
        client = boto3.client("s3", region_name="us-east-1")
        store = S3ObjectStore("race", client=client)
        start = threading.Barrier(2)

        def create(racer: int) -> bool:
            start.wait()
            return store.put_if_absent(key, f"racer {racer}".encode())

        with ThreadPoolExecutor(2) as pool:
            return sorted(pool.map(create, range(2)))

    with moto.mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="race")
        assert race("plain") == [True, True]  # moto's own race: why the test server exists
        monkeypatch.setattr(S3Response, "put_object", moto_server.atomic(S3Response.put_object))
        assert race("atomic") == [False, True]


def test_put_if_absent_creates_once_and_delete_removes(store):
    assert store.put_if_absent("p/once.json", b"first")
    assert not store.put_if_absent("p/once.json", b"second")
    assert store.get("p/once.json") == b"first"
    assert store.list("p/") == ["p/once.json"]  # no temporary file left behind, even by the loser
    store.delete("p/once.json")
    store.delete("p/once.json")  # gone already: not an error
    assert not store.exists("p/once.json")
    assert store.put_if_absent("p/once.json", b"again")
