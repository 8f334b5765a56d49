"""The model registry: immutable version records, aliases with a history of
every move, atomic writes and checksums verified before any load.

Layout inside an ObjectStore, per pipeline:
    <pipeline>/versions/<version>/artifacts/<file>   staged first
    <pipeline>/versions/<version>/record.json        created last, only if absent: the commit point
    <pipeline>/aliases/<alias>.json                  the newest move of an alias (a hint, see alias_log)
    <pipeline>/alias_history/<alias>/<n>.json        move n of an alias, created only if absent
    <pipeline>/versions/<version>/snapshot/<file>    what it was built from (core.snapshots), staged with the artifacts
    <pipeline>/data/<data hash>.parquet              training data, shared by the versions built from it
    <pipeline>/versions/<version>/collected.json     written by `registry gc` (core.retention) when it removed the
                                                     version's artifacts and snapshot; the record stays
A version without record.json (a killed or failed packaging) is invisible, and a
retry of the same version replaces what it staged. Pipeline names and version ids
are checked (core.identifiers) before any key is built from them.
"""

from __future__ import annotations

import hashlib
import json
import platform
import secrets
import tempfile
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from ml_pipelines.core import alias_log
from ml_pipelines.core.errors import ChecksumError, RegistryError, SnapshotError
from ml_pipelines.core.identifiers import check_pipeline_name, check_version_id, is_pipeline_name, new_version_id
from ml_pipelines.core.records import AliasMove, VersionRecord
from ml_pipelines.core.storage import ObjectNotFound, ObjectStore

ALIASES = ("champion", "challenger")
TRACKED_LIBRARIES = ("pandas", "numpy", "scikit-learn", "torch", "great-expectations", "bentoml", "dagster", "skops")
RECORD_KEY = "record.json"
COLLECTED_KEY = "collected.json"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in TRACKED_LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def utcnow() -> datetime:
    return datetime.now(UTC)


def check_alias(alias: str) -> str:
    if alias not in ALIASES:
        raise RegistryError(f"unknown alias {alias!r}; aliases are {', '.join(ALIASES)}")
    return alias


class ModelRegistry:
    def __init__(self, store: ObjectStore):
        self.store = store

    # ------------------------------------------------------------ versions

    new_version_id = staticmethod(new_version_id)

    @staticmethod
    def version_prefix(pipeline: str, version: str) -> str:
        """`<pipeline>/versions/<version>`, after checking both."""
        return f"{check_pipeline_name(pipeline)}/versions/{check_version_id(version)}"

    def has_version(self, pipeline: str, version: str) -> bool:
        """Whether the version is committed (its record exists)."""
        return self.store.exists(f"{self.version_prefix(pipeline, version)}/{RECORD_KEY}")

    def stage(self, pipeline: str, artifact_dir: Path, *, version: str, **fields: Any) -> VersionRecord:
        """Upload every file of artifact_dir for a version that is not committed yet, replacing whatever
        an earlier attempt at it left; returns its record, to be committed with commit() once
        everything else the version needs exists. Never touches a committed version."""
        prefix = self.version_prefix(pipeline, version)
        if self.has_version(pipeline, version):
            raise RegistryError(f"{pipeline} version {version} already exists; versions are immutable")
        for leftover in self.store.list(f"{prefix}/"):
            self.store.delete(leftover)
        checksums = {}
        for path in sorted(p for p in artifact_dir.rglob("*") if p.is_file()):
            name = path.relative_to(artifact_dir).as_posix()
            data = path.read_bytes()
            self.store.put(f"{prefix}/artifacts/{name}", data)
            checksums[name] = sha256_bytes(data)
        return VersionRecord(
            pipeline=pipeline,
            version=version,
            created_at=utcnow().isoformat(),
            artifacts=checksums,
            libraries=library_versions(),
            **fields,
        )

    def commit(self, record: VersionRecord) -> VersionRecord:
        """Make a staged version visible: create its record, only if no record exists."""
        key = f"{self.version_prefix(record.pipeline, record.version)}/{RECORD_KEY}"
        if not self.store.put_if_absent(key, record.to_json()):
            raise RegistryError(f"{record.pipeline} version {record.version} already exists; versions are immutable")
        return record

    def register(
        self, pipeline: str, artifact_dir: Path, *, version: str | None = None, **fields: Any
    ) -> VersionRecord:
        """stage() then commit(): a version whose artifacts are all it needs."""
        return self.commit(self.stage(pipeline, artifact_dir, version=version or new_version_id(), **fields))

    @staticmethod
    def _is_record_key(key: str) -> bool:
        """`<pipeline>/versions/<version>/record.json`, not an artifact that happens to be named so."""
        parts = key.split("/")
        return len(parts) == 4 and parts[1] == "versions" and parts[3] == RECORD_KEY

    def list_versions(self, pipeline: str) -> list[VersionRecord]:
        prefix = f"{check_pipeline_name(pipeline)}/versions/"
        keys = [k for k in self.store.list(prefix) if self._is_record_key(k)]
        records = [VersionRecord.from_json(self.store.get(k)) for k in keys]
        return sorted(records, key=lambda r: (r.created_at, r.version))

    def get_version(self, pipeline: str, version: str) -> VersionRecord:
        try:
            return VersionRecord.from_json(self.store.get(f"{self.version_prefix(pipeline, version)}/{RECORD_KEY}"))
        except ObjectNotFound as exc:
            raise RegistryError(f"{pipeline} has no version {version!r}") from exc

    def require_servable(self, pipeline: str, version: str) -> VersionRecord:
        """The record of a committed version that names everything serving needs; a RegistryError otherwise."""
        record = self.get_version(pipeline, version)
        if record.package is None:
            raise RegistryError(
                f"{pipeline} version {version} is incomplete: its record names no BentoML model or bento "
                "(it was written before packaging was atomic), so it cannot be served; package a new version"
            )
        return record

    def collected(self, pipeline: str, version: str) -> dict[str, Any] | None:
        """What `registry gc` noted when it removed the version's artifacts and snapshot, or None."""
        try:
            return json.loads(self.store.get(f"{self.version_prefix(pipeline, version)}/{COLLECTED_KEY}"))
        except ObjectNotFound:
            return None

    def require_not_collected(self, pipeline: str, version: str) -> None:
        """A SnapshotError saying when and why gc removed the version's files, if it did."""
        note = self.collected(pipeline, version)
        if note is not None:
            raise SnapshotError(
                f"{pipeline} version {version}: its artifacts and snapshot were removed by `registry gc` at "
                f"{note.get('collected_at')} ({note.get('reason')}); its record remains, but it can no longer be "
                "loaded or rebuilt"
            )

    def fetch_artifacts(self, pipeline: str, version: str, destination: Path) -> Path:
        """Copy a version's artifacts to destination, verifying each checksum first."""
        record = self.get_version(pipeline, version)
        destination.mkdir(parents=True, exist_ok=True)
        for name, expected in record.artifacts.items():
            key = f"{self.version_prefix(pipeline, version)}/artifacts/{name}"
            try:
                data = self.store.get(key)
            except ObjectNotFound as exc:
                self.require_not_collected(pipeline, version)
                raise ChecksumError(f"{self.store.uri(key)}: artifact is missing") from exc
            actual = sha256_bytes(data)
            if actual != expected:
                raise ChecksumError(
                    f"{self.store.uri(key)}: checksum mismatch (record {expected[:12]}, file {actual[:12]}); "
                    "refusing to load"
                )
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        return destination

    def load_model(self, pipeline: str, version: str, extra_trusted_roots: tuple[str, ...] = ()):
        from ml_pipelines.core.model_io import load_model

        with tempfile.TemporaryDirectory(prefix="ml_pipelines-load-") as tmp:
            directory = self.fetch_artifacts(pipeline, version, Path(tmp))
            return load_model(directory, extra_trusted_roots)

    # ------------------------------------------------------------ aliases (serialized: core.alias_log)

    def get_alias(self, pipeline: str, alias: str) -> str | None:
        return alias_log.current_version(self.store, check_pipeline_name(pipeline), check_alias(alias))

    def aliases(self, pipeline: str) -> dict[str, str]:
        found = {}
        for alias in ALIASES:
            version = self.get_alias(pipeline, alias)
            if version is not None:
                found[alias] = version
        return found

    def set_alias(
        self, pipeline: str, alias: str, version: str | None, *, actor: str, reason: str, rollback: bool = False
    ) -> AliasMove:
        """Point alias at a servable version (None clears it); one serialized, recorded move."""
        check_pipeline_name(pipeline)
        check_alias(alias)
        if version is not None:
            self.require_servable(pipeline, version)
        return alias_log.append(
            self.store, pipeline, alias,
            lambda _newest: AliasMove(pipeline, alias, version, None, utcnow().isoformat(), actor, reason, rollback),
        )

    def alias_history(self, pipeline: str, alias: str | None = None) -> list[AliasMove]:
        """Every move, oldest first: of one alias, or of all aliases interleaved by time."""
        check_pipeline_name(pipeline)
        if alias is not None:
            return alias_log.moves(self.store, pipeline, check_alias(alias))
        return alias_log.all_moves(self.store, pipeline, ALIASES)

    def promote(self, pipeline: str, version: str, *, actor: str, reason: str) -> AliasMove:
        return self.set_alias(pipeline, "champion", version, actor=actor, reason=reason)

    def rollback(self, pipeline: str, *, actor: str) -> AliasMove:
        """Move the champion back to the one before it. Rollbacks stack: v1 -> v2 -> v3,
        then two rollbacks, ends at v1 (a rollback undoes a promotion, not a rollback).
        The target is worked out from the same newest move the rollback is committed after."""
        check_pipeline_name(pipeline)

        def back(newest: AliasMove | None) -> AliasMove:
            if newest is None:
                raise RegistryError(f"{pipeline} has no champion to roll back")
            target, rollback_to = alias_log.rollback_target(self.store, pipeline, "champion", newest)
            return AliasMove(pipeline, "champion", target, newest.version, utcnow().isoformat(), actor,
                             f"rollback from {newest.version}", rollback=True, rollback_to=rollback_to)

        return alias_log.append(self.store, pipeline, "champion", back)

    # ------------------------------------------------------------ monitoring and cards (mutable, per version)

    def _drift_prefix(self, pipeline: str, version: str) -> str:
        return f"{check_pipeline_name(pipeline)}/drift_history/{check_version_id(version)}/"

    def record_drift(self, pipeline: str, version: str, entry: dict[str, Any]) -> None:
        stamp = f"{utcnow():%Y%m%dT%H%M%S%f}-{secrets.token_hex(2)}"
        self.store.put(f"{self._drift_prefix(pipeline, version)}{stamp}.json", json.dumps(entry, default=str).encode())

    def drift_history(self, pipeline: str, version: str) -> list[dict[str, Any]]:
        return [json.loads(self.store.get(k)) for k in self.store.list(self._drift_prefix(pipeline, version))]

    def artifact_bytes(self, pipeline: str, version: str, name: str) -> bytes:
        """One artifact, checksum verified."""
        expected = self.get_version(pipeline, version).artifacts.get(name)
        key = f"{self.version_prefix(pipeline, version)}/artifacts/{name}"
        if expected is None:
            raise RegistryError(f"{pipeline} {version} has no artifact {name!r}")
        try:
            data = self.store.get(key)
        except ObjectNotFound as exc:
            self.require_not_collected(pipeline, version)
            raise ChecksumError(f"{self.store.uri(key)}: artifact is missing") from exc
        if sha256_bytes(data) != expected:
            raise ChecksumError(f"{self.store.uri(key)}: checksum mismatch; refusing to load")
        return data

    def card_key(self, pipeline: str, version: str, suffix: str) -> str:
        return f"{check_pipeline_name(pipeline)}/cards/{check_version_id(version)}.{suffix}"

    def pipelines(self) -> list[str]:
        keys = self.store.list("")
        # only committed versions count: a killed first write must not make a pipeline appear
        names = {k.split("/", 1)[0] for k in keys if self._is_record_key(k)}
        return sorted(name for name in names if is_pipeline_name(name))
