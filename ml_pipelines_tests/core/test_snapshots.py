"""What a version keeps (core.snapshots), rebuilding it (core.reproduce), comparing two (core.version_diff)
and retention (core.retention), on every store the registry suite runs on: the local filesystem and S3
(moto's real server). Versions are made by the core calls the assets make (ml_pipelines_tests/versions.py),
on a small copy of examples/churn.csv; components' test_versions_e2e.py runs the same through Dagster
and the command line."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
import yaml

from ml_pipelines.core.errors import ChecksumError, SnapshotError
from ml_pipelines.core.hashing import frame_hash
from ml_pipelines.core.registry import ModelRegistry
from ml_pipelines.core.reproduce import TORCH_TOLERANCE, reproduce
from ml_pipelines.core.retention import plan_gc, run_gc
from ml_pipelines.core.snapshots import (
    DATA_FILE,
    ENVIRONMENT_FILE,
    SPEC_FILE,
    SPLIT_FILE,
    data_key,
    environment,
    environment_changes,
    load_snapshot,
    spec_text,
    store_training_data,
    to_parquet,
)
from ml_pipelines.core.storage import LocalObjectStore
from ml_pipelines.core.version_diff import diff_versions
from ml_pipelines.spec import PipelineSpec
from ml_pipelines_tests import REPO_ROOT
from ml_pipelines_tests.versions import (
    CHURN_CSV,
    NEW_CHARGE,
    changed_churn_frame,
    churn_attributes,
    churn_frame,
    train_version,
)

pytestmark = pytest.mark.usefixtures("one_thread")

V1, V2, V3, V4 = (f"20260101-000000-00000{i}" for i in range(1, 5))
PIPELINE = "churn"


def spec_with(**changes) -> PipelineSpec:
    return PipelineSpec.model_validate(churn_attributes(CHURN_CSV, **changes))


def stronger_regularisation() -> PipelineSpec:
    attributes = churn_attributes(CHURN_CSV)
    attributes["models"][0]["params"]["C"] = 0.05
    return PipelineSpec.model_validate(attributes)


def total_bytes(store, skip: str = "collected.json") -> int:
    return sum(store.size(k) for k in store.list("") if not k.endswith(skip))


# ---------------------------------------------------------------- reproduce and diff


def test_a_version_keeps_its_data_spec_environment_and_split(registry):
    record = train_version(registry, spec_with(), churn_frame(), V1)
    snapshot = record.snapshot
    assert set(snapshot.files) == {DATA_FILE, SPEC_FILE, ENVIRONMENT_FILE, SPLIT_FILE}
    assert snapshot.files[DATA_FILE].key == data_key(PIPELINE, record.data_version)
    for stored in snapshot.files.values():  # sizes in the record are the stored objects' sizes
        assert registry.store.size(stored.key) == stored.bytes > 0
    assert snapshot.data_rows == 400 and snapshot.split["test_rows"] == 80 and snapshot.split["stratified"]
    assert snapshot.seeds["split"] == 7 and snapshot.seeds["cv_folds"] == 0
    loaded = load_snapshot(registry, record)
    assert frame_hash(loaded.frame) == record.data_version == frame_hash(churn_frame())
    assert loaded.spec().spec_hash() == record.spec_hash
    assert "max_iter: 500" in loaded.spec_text and "bootstrap_samples: 20" in loaded.spec_text
    assert loaded.environment["packages"]["scikit-learn"] and loaded.environment["hardware"]["cores"] >= 1
    assert sorted([*loaded.split.train, *loaded.split.test]) == list(range(400))
    # the record read back from the store names the same files
    assert registry.get_version(PIPELINE, V1).snapshot == snapshot


def test_reproduce_matches_exactly_and_diff_names_the_changes(registry):
    v1 = train_version(registry, spec_with(), churn_frame(), V1)
    v2 = train_version(registry, stronger_regularisation(), changed_churn_frame(), V2)
    objects_before = {k: registry.store.get(k) for k in registry.store.list("")}

    report = reproduce(registry, PIPELINE, V1)
    assert report.matches, report.failures()
    assert report.tolerance == 0  # sklearn: exact
    checked = {c.what for c in report.checks}
    assert {"spec", "data", "split", "model", "metric roc_auc", "metric accuracy", "predictions"} <= checked
    assert report.environment == {"added": {}, "removed": {}, "changed": {}}  # same process, same environment
    assert {k: registry.store.get(k) for k in registry.store.list("")} == objects_before  # nothing written

    diff = diff_versions(registry, PIPELINE, V1, V2)
    rows = diff.rows
    assert (rows["old_rows"], rows["new_rows"], rows["added"], rows["removed"]) == (400, 399, 1, 2)
    assert [(r["customer_id"], r["monthly_charges"]) for r in rows["added_rows"]] == [("C0003", NEW_CHARGE)]
    assert sorted(r["customer_id"] for r in rows["removed_rows"]) == ["C0003", "C0010"]
    assert "+    C: 0.05" in diff.spec
    assert diff.model["params"] == {} and v1.params == v2.params == {}  # the spec's params are not a grid point
    assert diff.metrics["roc_auc"]["old"] == v1.metrics["roc_auc"]
    assert diff.metrics["roc_auc"]["new"] == v2.metrics["roc_auc"] != v1.metrics["roc_auc"]
    assert diff.metrics["roc_auc"]["old_interval"] == v1.extra["intervals"]["roc_auc"]
    assert diff.schema["rules"]["monthly_charges"]["reference_null_share"][1] == pytest.approx(15 / 399)
    shift = {d["column"]: d for d in diff.distribution}
    assert shift["monthly_charges"]["kind"] == "numeric" and shift["contract"]["kind"] == "categorical"
    assert diff.environment == {"added": {}, "removed": {}, "changed": {}}
    json.dumps(diff.to_dict())  # --format json


def test_reproduce_reports_a_metric_that_does_not_match(registry, monkeypatch):
    train_version(registry, spec_with(), churn_frame(), V1)
    from ml_pipelines.core import reproduce as module

    real = module.evaluate_for_spec

    def off_by_a_little(*args, **kwargs):
        result = real(*args, **kwargs)
        result.metrics["roc_auc"] += 1e-9
        return result

    monkeypatch.setattr(module, "evaluate_for_spec", off_by_a_little)
    report = reproduce(registry, PIPELINE, V1)
    assert not report.matches
    assert [c.what for c in report.failures()] == ["metric roc_auc"]
    assert "differs by more than exact" in report.failures()[0].detail
    assert reproduce(registry, PIPELINE, V1, tolerance=1e-6).matches  # a stated tolerance


@pytest.mark.parametrize("name", [DATA_FILE, SPEC_FILE, ENVIRONMENT_FILE, SPLIT_FILE])
def test_one_tampered_byte_is_refused_naming_the_file(registry, name):
    record = train_version(registry, spec_with(), churn_frame(), V1)
    key = record.snapshot.files[name].key
    payload = bytearray(registry.store.get(key))
    payload[len(payload) // 2] ^= 0x01
    registry.store.put(key, bytes(payload))
    with pytest.raises(ChecksumError, match="checksum mismatch") as caught:
        reproduce(registry, PIPELINE, V1)
    assert registry.store.uri(key) in str(caught.value)
    with pytest.raises(ChecksumError, match=key.rsplit("/", 1)[-1]):
        diff_versions(registry, PIPELINE, V1, V1)


def test_two_versions_trained_on_the_same_data_store_it_once(registry):
    v1 = train_version(registry, spec_with(), churn_frame(), V1)
    v2 = train_version(registry, stronger_regularisation(), churn_frame(), V2)
    assert v1.spec_hash != v2.spec_hash
    assert v1.snapshot.files[DATA_FILE] == v2.snapshot.files[DATA_FILE]
    stored = [k for k in registry.store.list(f"{PIPELINE}/data/") if k.endswith(".parquet")]
    assert stored == [v1.snapshot.files[DATA_FILE].key]
    assert v1.snapshot.files[SPEC_FILE].key != v2.snapshot.files[SPEC_FILE].key  # each keeps its own spec
    assert reproduce(registry, PIPELINE, V2).matches


def test_data_that_would_not_read_back_unchanged_is_refused():
    frame = pd.DataFrame({"mixed": [1, "a", 2.5, None]})  # no Parquet type holds this column
    with pytest.raises(SnapshotError, match="cannot be stored as Parquet"):
        to_parquet(frame, frame_hash(frame))
    frame = pd.DataFrame({"x": [1.0, 2.0]})
    with pytest.raises(SnapshotError, match="does not read back from Parquet unchanged"):
        to_parquet(frame, "0" * 16)  # a hash that is not this data's


def test_a_spec_is_stored_as_written_and_reads_back_to_the_same_hash():
    spec = spec_with()
    text = spec_text(spec).decode()
    assert "serving" not in text  # defaults the spec did not write are not written out
    assert PipelineSpec.model_validate(yaml.safe_load(text)).spec_hash() == spec.spec_hash()


def test_environment_changes_name_every_difference():
    then = environment()
    now = json.loads(json.dumps(then))
    now["packages"]["numpy"] = "0.0.1"
    now["packages"]["brand-new"] = "1.0"
    del now["packages"]["pandas"]
    now["hardware"]["gpus"] = ["NVIDIA H200"]
    changes = environment_changes(then, now)
    assert changes["changed"] == {"numpy": [then["packages"]["numpy"], "0.0.1"]}
    assert changes["added"] == {"brand-new": "1.0"}
    assert changes["removed"] == {"pandas": then["packages"]["pandas"]}
    assert changes["hardware.gpus"] == [then["hardware"]["gpus"], ["NVIDIA H200"]]


# ---------------------------------------------------------------- retention


def test_gc_keeps_aliased_versions_and_shared_data_frees_bytes_and_keeps_records(registry):
    shared, other, newest = churn_frame(), changed_churn_frame(), churn_frame().iloc[:300]
    train_version(registry, spec_with(), shared, V1)
    train_version(registry, stronger_regularisation(), shared, V2)  # shares V1's data
    v3 = train_version(registry, spec_with(), other, V3)
    train_version(registry, spec_with(), newest, V4)
    registry.set_alias(PIPELINE, "champion", V1, actor="test", reason="first")
    registry.set_alias(PIPELINE, "champion", V4, actor="test", reason="better")  # V1 was champion once
    before = total_bytes(registry.store)

    dry = plan_gc(registry, PIPELINE, 1, grace=timedelta(0))
    assert set(dry.kept) == {V1, V4} and set(dry.collect) == {V2, V3}
    assert [k for k, _ in dry.data] == [v3.snapshot.files[DATA_FILE].key]  # V2's data is V1's: kept
    assert total_bytes(registry.store) == before  # planning changes nothing

    freed = run_gc(registry, dry)
    assert freed == dry.bytes > 0
    assert before - total_bytes(registry.store) == freed
    assert [r.version for r in registry.list_versions(PIPELINE)] == [V1, V2, V3, V4]  # every record remains
    assert reproduce(registry, PIPELINE, V1).matches  # the kept version still rebuilds from the shared data
    for version in (V2, V3):
        with pytest.raises(SnapshotError, match=f"{version}: its artifacts and snapshot were removed by `registry gc`"):
            reproduce(registry, PIPELINE, version)
        with pytest.raises(SnapshotError, match="removed by `registry gc`"):
            registry.load_model(PIPELINE, version)
    diff = diff_versions(registry, PIPELINE, V1, V2)  # by the records alone, saying why
    assert diff.rows is None and any("removed by `registry gc`" in n for n in diff.notes)
    again = plan_gc(registry, PIPELINE, 1, grace=timedelta(0))
    assert again.bytes == 0 and again.already_collected == [V2, V3]


def test_gc_leaves_data_a_run_used_recently(registry):
    train_version(registry, spec_with(), churn_frame(), V1)
    train_version(registry, spec_with(), changed_churn_frame(), V2)
    plan = plan_gc(registry, PIPELINE, 1)  # the default grace: V1's data was used a moment ago
    assert set(plan.collect) == {V1} and plan.data == []
    assert "within the last" in plan.data_kept[data_key(PIPELINE, frame_hash(churn_frame()))]
    later = plan_gc(registry, PIPELINE, 1, now=datetime.now(UTC) + timedelta(days=2))
    assert [k for k, _ in later.data] == [data_key(PIPELINE, frame_hash(churn_frame()))]
    # a run that stores the same data again marks it used now, and gc leaves it
    store_training_data(registry, PIPELINE, churn_frame(), frame_hash(churn_frame()),
                        now=datetime.now(UTC) + timedelta(days=2))
    assert plan_gc(registry, PIPELINE, 1, now=datetime.now(UTC) + timedelta(days=2)).data == []


# ---------------------------------------------------------------- a killed run

KILLED = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    import pandas as pd
    from ml_pipelines.core.registry import ModelRegistry
    from ml_pipelines.core.storage import LocalObjectStore, ObjectStore, S3ObjectStore
    from ml_pipelines.spec import PipelineSpec
    from ml_pipelines_tests.versions import CHURN_CSV, churn_attributes, train_version

    root = Path(sys.argv[1])
    inner = {rebuild}

    class Stalling(ObjectStore):
        # once the first snapshot file of the version is stored, say so and stall until killed
        def __init__(self, inner):
            self.inner = inner
        def put(self, key, data):
            self.inner.put(key, data)
            if "/snapshot/" in key:
                print("STAGING", flush=True)
                time.sleep(600)
        def put_if_absent(self, key, data): return self.inner.put_if_absent(key, data)
        def get(self, key): return self.inner.get(key)
        def delete(self, key): return self.inner.delete(key)
        def exists(self, key): return self.inner.exists(key)
        def list(self, prefix): return self.inner.list(prefix)
        def uri(self, key): return self.inner.uri(key)

    frame = pd.read_csv(sys.argv[2])
    train_version(ModelRegistry(Stalling(inner)), PipelineSpec.model_validate(churn_attributes(CHURN_CSV)), frame,
                  sys.argv[3])
    print("COMMITTED", flush=True)
    """
)


def test_a_killed_run_leaves_nothing_a_later_version_could_pick_up(registry, store_kind, tmp_path):
    csv = tmp_path / "churn.csv"
    churn_frame().to_csv(csv, index=False)
    script = tmp_path / "killed.py"
    script.write_text(KILLED.format(rebuild=store_kind.rebuild))
    process = subprocess.Popen([sys.executable, str(script), str(tmp_path), str(csv), V1], cwd=REPO_ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.strip() == "STAGING", (line, process.stderr.read() if process.poll() is not None else "")
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL
    assert registry.list_versions(PIPELINE) == []  # staged, never committed: invisible
    with pytest.raises(Exception, match="has no version"):
        reproduce(registry, PIPELINE, V1)
    # the data it stored is whole (one atomic write), and the next run on that data reuses it
    key = data_key(PIPELINE, frame_hash(churn_frame()))
    assert frame_hash(pd.read_parquet(io.BytesIO(registry.store.get(key)))) == frame_hash(churn_frame())
    record = train_version(registry, spec_with(), churn_frame(), V1)  # the retry of the same version
    assert record.snapshot.files[DATA_FILE].key == key
    assert reproduce(registry, PIPELINE, V1).matches


def test_a_torch_version_reproduces_within_the_stated_tolerance(tmp_path):
    registry = ModelRegistry(LocalObjectStore(tmp_path / "registry"))
    torch_model = {"name": "mlp", "framework": "torch", "hidden_layers": [8], "epochs": 5, "batch_size": 64}
    train_version(registry, spec_with(models=[torch_model]), churn_frame(), V1)
    report = reproduce(registry, PIPELINE, V1)
    assert report.framework == "torch" and report.tolerance == TORCH_TOLERANCE
    assert report.matches, report.failures()
