"""What a version was built from, kept in the registry's store so that it can be rebuilt
(`ml-pipelines reproduce`, core.reproduce) and compared (`ml-pipelines diff`, core.version_diff):

    <pipeline>/data/<data hash>.parquet                     the training data as it entered `features` (validated,
                                                            with the production batches the learning loop added):
                                                            one object per data hash, shared by every version
                                                            built from that data
    <pipeline>/data/<data hash>.json                        its sha256, size and rows, and when a run last used it
    <pipeline>/versions/<version>/snapshot/spec.yaml        the spec as written (the fields it sets)
    <pipeline>/versions/<version>/snapshot/environment.json every installed distribution (name and version),
                                                            Python, the platform and the hardware
    <pipeline>/versions/<version>/snapshot/split.parquet    which rows were the training and the test rows, in order

The features step stores the data before any version exists. The object is created only if absent, in one atomic
write, and only after it was checked to read back to the same data hash; a killed write leaves nothing that a
later run could pick up. The version's own files are staged with its artifacts and become visible when its record
commits. The record names every file with its sha256 and size, and every read checks the sha256.
"""

from __future__ import annotations

import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from ml_pipelines.core import frame_codec
from ml_pipelines.core.errors import ChecksumError, SnapshotError
from ml_pipelines.core.features import FeatureSet, SplitPositions
from ml_pipelines.core.hashing import frame_hash
from ml_pipelines.core.identifiers import check_pipeline_name
from ml_pipelines.core.records import Snapshot, StoredFile, VersionRecord
from ml_pipelines.core.registry import ModelRegistry, sha256_bytes
from ml_pipelines.core.storage import ObjectNotFound, ObjectStore
from ml_pipelines.spec import PipelineSpec, TorchModel

DATA_FILE = "data.parquet"
SPEC_FILE = "spec.yaml"
ENVIRONMENT_FILE = "environment.json"
SPLIT_FILE = "split.parquet"
SNAPSHOT_DIR = "snapshot"
DATA_VERSION_PATTERN = r"[0-9a-f]{16,64}"
# the seeds core uses besides the spec's: cross-validation folds, bootstrap intervals, permutation importance
FIXED_SEEDS = {"cv_folds": 0, "bootstrap_intervals": 0, "permutation_importance": 0}


def utcnow() -> datetime:
    return datetime.now(UTC)


# ---------------------------------------------------------------- the training data (shared, by data hash)


def data_key(pipeline: str, data_version: str) -> str:
    """`<pipeline>/data/<data hash>.parquet`, after checking both."""
    if not re.fullmatch(DATA_VERSION_PATTERN, data_version or ""):
        raise SnapshotError(f"data hash {data_version!r} is not valid: it is the hex content hash of the data")
    return f"{check_pipeline_name(pipeline)}/data/{data_version}.parquet"


def note_key(key: str) -> str:
    return key.removesuffix(".parquet") + ".json"


def data_note(store: ObjectStore, key: str) -> dict[str, Any] | None:
    """What the data object's note says (sha256, bytes, rows, created_at, last_used_at), or None."""
    try:
        return json.loads(store.get(note_key(key)))
    except (ObjectNotFound, ValueError):
        return None


def to_parquet(frame: pd.DataFrame, data_version: str) -> bytes:
    """frame as Parquet, checked to read back to the same data hash (column names, dtypes and values)."""
    try:  # a chunk at a time, and read back with one copy of the frame at most (frame_codec)
        payload = frame_codec.write_parquet(frame.reset_index(drop=True))
    except (ValueError, TypeError, NotImplementedError, ImportError) as exc:  # what pyarrow's errors subclass
        raise SnapshotError(f"training data cannot be stored as Parquet: {exc}") from exc
    back = frame_codec.read_parquet(payload)
    if frame_hash(back) != data_version:
        changed = [
            f"{c!r} ({frame[c].dtype} -> {back[c].dtype if c in back.columns else 'missing'})"
            for c in frame.columns
            if c not in back.columns or frame_hash(frame[[c]]) != frame_hash(back[[c]])
        ]
        raise SnapshotError(
            f"training data does not read back from Parquet unchanged (data hash {data_version}); "
            f"columns that change: {', '.join(changed) or 'none by itself (the row order or the index)'}"
        )
    return payload


def store_training_data(
    registry: ModelRegistry, pipeline: str, frame: pd.DataFrame, data_version: str, *, now: datetime | None = None
) -> StoredFile:
    """Store the data as it entered `features`, once per data hash; returns what a record names.
    Data already stored under this hash is reused (and its note says a run used it now, so that
    `registry gc` leaves it for a run still in progress)."""
    store, key = registry.store, data_key(pipeline, data_version)
    stamp = (now or utcnow()).isoformat()
    note = data_note(store, key)
    if note is not None and store.exists(key):
        store.put(note_key(key), json.dumps({**note, "last_used_at": stamp}).encode())
        return StoredFile(key, note["sha256"], int(note["bytes"]))
    payload = to_parquet(frame, data_version)
    if not store.put_if_absent(key, payload):
        payload = store.get(key)  # another run stored this data first, or died before its note: what is there counts
    note = {"data_version": data_version, "sha256": sha256_bytes(payload), "bytes": len(payload), "rows": len(frame),
            "created_at": stamp, "last_used_at": stamp}
    store.put(note_key(key), json.dumps(note).encode())
    return StoredFile(key, note["sha256"], len(payload))


def delete_data(store: ObjectStore, key: str) -> None:
    """Remove a data object: its note first, so a half-finished removal leaves data without a note
    (which the next run that needs it re-checks), never a note without data."""
    store.delete(note_key(key))
    store.delete(key)


# ---------------------------------------------------------------- the version's own files


def spec_text(spec: PipelineSpec) -> bytes:
    """The spec as YAML: the fields it sets, as written; every field when the written ones would not
    validate back to the same spec (same spec hash)."""
    for exclude_unset in (True, False):
        text = yaml.safe_dump(spec.model_dump(mode="json", by_alias=True, exclude_unset=exclude_unset),
                              sort_keys=False, allow_unicode=True)
        if PipelineSpec.model_validate(yaml.safe_load(text)).spec_hash() == spec.spec_hash():
            return text.encode()
    raise SnapshotError(f"{spec.name}: the spec does not survive YAML unchanged; it cannot be stored")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpus() -> list[str]:
    """GPU models, found without initialising CUDA in this process: torch's own answer when it already
    did, else the NVIDIA driver's files, else nvidia-smi."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    names = []
    for info in sorted(Path("/proc/driver/nvidia/gpus").glob("*/information")):
        for line in info.read_text(errors="replace").splitlines():
            if line.startswith("Model:"):
                names.append(line.split(":", 1)[1].strip())
    if names or shutil.which("nvidia-smi") is None:
        return names
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in done.stdout.splitlines() if line.strip()] if done.returncode == 0 else []


def installed_packages() -> dict[str, str]:
    """Every installed distribution, name -> version (the first one found on sys.path wins, as for imports)."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(re.sub(r"[-_.]+", "-", name).lower(), dist.version)
    return dict(sorted(found.items()))


def environment() -> dict[str, Any]:
    """The software and hardware this process runs on."""
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "packages": installed_packages(),
        "hardware": {"cpu": _cpu_model(), "cores": os.cpu_count(), "machine": platform.machine(), "gpus": _gpus()},
    }


def split_parquet(split: SplitPositions) -> bytes:
    frame = pd.DataFrame({
        "part": pd.Categorical(["train"] * len(split.train) + ["test"] * len(split.test), categories=["train", "test"]),
        "position": np.concatenate([split.train, split.test]).astype(np.int64),
    })
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False, compression="zstd")
    return buffer.getvalue()


def read_split(payload: bytes) -> SplitPositions:
    frame = pd.read_parquet(io.BytesIO(payload))
    part, position = frame["part"].astype(str).to_numpy(), frame["position"].to_numpy(dtype=np.int64)
    return SplitPositions(position[part == "train"], position[part == "test"])


def seeds_of(spec: PipelineSpec) -> dict[str, Any]:
    """Every seed a build of this spec uses."""
    seed = spec.features.split.seed
    return {
        "split": seed,
        "selection": seed,  # the cross-validation sample, and random_state of estimators that do not set it
        "paired_bootstrap": seed,
        **FIXED_SEEDS,
        "torch": {m.name: m.seed for m in spec.models if isinstance(m, TorchModel)},
    }


def stage_snapshot(registry: ModelRegistry, spec: PipelineSpec, features: FeatureSet, version: str) -> Snapshot:
    """Stage the version's spec, environment and split beside its artifacts (invisible until its record
    commits); the record's snapshot, naming them and the stored training data."""
    if features.data_snapshot is None or features.split is None:
        raise SnapshotError(
            f"{spec.name}: the features carry no stored training data; they must come from the features step "
            "(core.snapshots.store_training_data), so that the version can be rebuilt"
        )
    prefix = f"{registry.version_prefix(spec.name, version)}/{SNAPSHOT_DIR}"
    files = {DATA_FILE: features.data_snapshot}
    for name, payload in (
        (SPEC_FILE, spec_text(spec)),
        (ENVIRONMENT_FILE, json.dumps(environment(), indent=2).encode()),
        (SPLIT_FILE, split_parquet(features.split)),
    ):
        registry.store.put(f"{prefix}/{name}", payload)
        files[name] = StoredFile(f"{prefix}/{name}", sha256_bytes(payload), len(payload))
    split = {"holdout": features.holdout, "stratified": features.stratified,
             "train_rows": len(features.split.train), "test_rows": len(features.split.test)}
    return Snapshot(files, features.split.rows, seeds_of(spec), split)


def check_data_present(registry: ModelRegistry, snapshot: Snapshot) -> None:
    """The shared training data a staged version names is still there (checked just before it commits)."""
    data = snapshot.files[DATA_FILE]
    if not registry.store.exists(data.key):
        raise SnapshotError(
            f"{registry.store.uri(data.key)}: the training data this version was built from was removed (by "
            "`registry gc`?) while the run was in progress; run it again"
        )


# ---------------------------------------------------------------- reading back, checksums verified


def require_snapshot(registry: ModelRegistry, record: VersionRecord) -> Snapshot:
    """The record's snapshot, when the version still has one; a SnapshotError saying why not otherwise."""
    registry.require_not_collected(record.pipeline, record.version)
    if record.snapshot is None:
        raise SnapshotError(
            f"{record.pipeline} version {record.version} was registered before versions kept what they were "
            "built from (no snapshot in its record); it cannot be rebuilt"
        )
    return record.snapshot


def read_file(registry: ModelRegistry, stored: StoredFile) -> bytes:
    """One snapshot file, its sha256 checked against the record's."""
    uri = registry.store.uri(stored.key)
    try:
        payload = registry.store.get(stored.key)
    except ObjectNotFound as exc:
        raise SnapshotError(f"{uri}: snapshot file is missing") from exc
    actual = sha256_bytes(payload)
    if actual != stored.sha256:
        raise ChecksumError(
            f"{uri}: checksum mismatch (record {stored.sha256[:12]}, file {actual[:12]}); refusing to use it"
        )
    return payload


@dataclass(frozen=True)
class LoadedSnapshot:
    """A version's snapshot read back, every file checked."""

    record: VersionRecord
    spec_text: str
    environment: dict[str, Any]
    split: SplitPositions
    frame: pd.DataFrame

    def spec(self) -> PipelineSpec:
        from pydantic import ValidationError

        try:
            return PipelineSpec.model_validate(yaml.safe_load(self.spec_text))
        except ValidationError as exc:
            raise SnapshotError(
                f"{self.record.pipeline} version {self.record.version}: its stored spec no longer validates "
                f"with this code: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}"
            ) from None


def load_snapshot(registry: ModelRegistry, record: VersionRecord, *, with_data: bool = True) -> LoadedSnapshot:
    """Every file of the version's snapshot, checked; the data frame only with with_data (it is the large one)."""
    snapshot = require_snapshot(registry, record)
    spec = read_file(registry, snapshot.files[SPEC_FILE]).decode()
    env = json.loads(read_file(registry, snapshot.files[ENVIRONMENT_FILE]))
    split = read_split(read_file(registry, snapshot.files[SPLIT_FILE]))
    frame = pd.read_parquet(io.BytesIO(read_file(registry, snapshot.files[DATA_FILE]))) if with_data else pd.DataFrame()
    return LoadedSnapshot(record, spec, env, split, frame)


# ---------------------------------------------------------------- environments compared


def environment_changes(then: dict[str, Any], now: dict[str, Any]) -> dict[str, Any]:
    """Every difference between two environments: packages added, removed and changed, and each other
    field (Python, platform, hardware) that differs, as [then, now]."""
    old, new = then.get("packages", {}), now.get("packages", {})
    changes: dict[str, Any] = {
        "added": {n: new[n] for n in sorted(set(new) - set(old))},
        "removed": {n: old[n] for n in sorted(set(old) - set(new))},
        "changed": {n: [old[n], new[n]] for n in sorted(set(old) & set(new)) if old[n] != new[n]},
    }
    for field in ("python", "implementation", "platform"):
        if then.get(field) != now.get(field):
            changes[field] = [then.get(field), now.get(field)]
    hw_then, hw_now = then.get("hardware", {}), now.get("hardware", {})
    for field in sorted(set(hw_then) | set(hw_now)):
        if hw_then.get(field) != hw_now.get(field):
            changes[f"hardware.{field}"] = [hw_then.get(field), hw_now.get(field)]
    return changes


def environment_lines(changes: dict[str, Any]) -> list[str]:
    """One line per difference; ["none"] when there is none."""
    lines = [f"+ {n}=={v}" for n, v in changes.get("added", {}).items()]
    lines += [f"- {n}=={v}" for n, v in changes.get("removed", {}).items()]
    lines += [f"~ {n} {a} -> {b}" for n, (a, b) in changes.get("changed", {}).items()]
    lines += [f"~ {k}: {v[0]} -> {v[1]}" for k, v in changes.items() if k not in ("added", "removed", "changed")]
    return lines or ["none"]
