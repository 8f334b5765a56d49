"""The model registry: immutable version records, aliases with a history of
every move, atomic writes and checksums verified before any load.

Layout inside an ObjectStore, per pipeline:
    <pipeline>/versions/<version>/artifacts/<file>   written first
    <pipeline>/versions/<version>/record.json        written last: the commit point
    <pipeline>/aliases/<alias>.json                  current target of an alias
    <pipeline>/alias_history/<time>-<alias>.json     one object per move, never rewritten
A version without record.json (a killed write) is invisible.
"""

from __future__ import annotations

import hashlib
import json
import platform
import secrets
import tempfile
from dataclasses import asdict
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from ml_pipelines.core.errors import ChecksumError, RegistryError
from ml_pipelines.core.records import AliasMove, VersionRecord
from ml_pipelines.core.storage import ObjectNotFound, ObjectStore

ALIASES = ("champion", "challenger")
TRACKED_LIBRARIES = ("pandas", "numpy", "scikit-learn", "torch", "great-expectations", "bentoml", "dagster", "skops")


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


class ModelRegistry:
    def __init__(self, store: ObjectStore):
        self.store = store

    # ------------------------------------------------------------ versions

    @staticmethod
    def new_version_id(now: datetime | None = None) -> str:
        now = now or utcnow()
        return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"

    def register(
        self, pipeline: str, artifact_dir: Path, *, version: str | None = None, **fields: Any
    ) -> VersionRecord:
        """Upload every file of artifact_dir, then commit the record. Never overwrites a version."""
        version = version or self.new_version_id()
        prefix = f"{pipeline}/versions/{version}"
        if self.store.exists(f"{prefix}/record.json"):
            raise RegistryError(f"{pipeline} version {version} already exists; versions are immutable")
        checksums = {}
        for path in sorted(p for p in artifact_dir.rglob("*") if p.is_file()):
            name = path.relative_to(artifact_dir).as_posix()
            data = path.read_bytes()
            self.store.put(f"{prefix}/artifacts/{name}", data)
            checksums[name] = sha256_bytes(data)
        record = VersionRecord(
            pipeline=pipeline,
            version=version,
            created_at=utcnow().isoformat(),
            artifacts=checksums,
            libraries=library_versions(),
            **fields,
        )
        self.store.put(f"{prefix}/record.json", record.to_json())
        return record

    @staticmethod
    def _is_record_key(key: str) -> bool:
        """`<pipeline>/versions/<version>/record.json`, not an artifact that happens to be named so."""
        parts = key.split("/")
        return len(parts) == 4 and parts[1] == "versions" and parts[3] == "record.json"

    def list_versions(self, pipeline: str) -> list[VersionRecord]:
        keys = [k for k in self.store.list(f"{pipeline}/versions/") if self._is_record_key(k)]
        records = [VersionRecord.from_json(self.store.get(k)) for k in keys]
        return sorted(records, key=lambda r: (r.created_at, r.version))

    def get_version(self, pipeline: str, version: str) -> VersionRecord:
        try:
            return VersionRecord.from_json(self.store.get(f"{pipeline}/versions/{version}/record.json"))
        except ObjectNotFound as exc:
            raise RegistryError(f"{pipeline} has no version {version!r}") from exc

    def fetch_artifacts(self, pipeline: str, version: str, destination: Path) -> Path:
        """Copy a version's artifacts to destination, verifying each checksum first."""
        record = self.get_version(pipeline, version)
        destination.mkdir(parents=True, exist_ok=True)
        for name, expected in record.artifacts.items():
            key = f"{pipeline}/versions/{version}/artifacts/{name}"
            try:
                data = self.store.get(key)
            except ObjectNotFound as exc:
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

    # ------------------------------------------------------------ aliases

    def get_alias(self, pipeline: str, alias: str) -> str | None:
        try:
            return json.loads(self.store.get(f"{pipeline}/aliases/{alias}.json"))["version"]
        except ObjectNotFound:
            return None

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
        if alias not in ALIASES:
            raise RegistryError(f"unknown alias {alias!r}; aliases are {', '.join(ALIASES)}")
        if version is not None:
            self.get_version(pipeline, version)  # raises for an unknown version
        previous = self.get_alias(pipeline, alias)
        now = utcnow()
        move = AliasMove(pipeline, alias, version, previous, now.isoformat(), actor, reason, rollback)
        payload = json.dumps(asdict(move), indent=2).encode()
        stamp = f"{now:%Y%m%dT%H%M%S%f}-{secrets.token_hex(2)}"
        self.store.put(f"{pipeline}/alias_history/{stamp}-{alias}.json", payload)
        if version is None:
            self.store.put(f"{pipeline}/aliases/{alias}.json", json.dumps({"version": None}).encode())
        else:
            self.store.put(f"{pipeline}/aliases/{alias}.json", payload)
        return move

    def alias_history(self, pipeline: str, alias: str | None = None) -> list[AliasMove]:
        moves = [AliasMove(**json.loads(self.store.get(k))) for k in self.store.list(f"{pipeline}/alias_history/")]
        return [m for m in moves if alias is None or m.alias == alias]

    def promote(self, pipeline: str, version: str, *, actor: str, reason: str) -> AliasMove:
        return self.set_alias(pipeline, "champion", version, actor=actor, reason=reason)

    def rollback(self, pipeline: str, *, actor: str) -> AliasMove:
        """Move the champion back to the one before it. Rollbacks stack: v1 -> v2 -> v3,
        then two rollbacks, ends at v1 (a rollback undoes a promotion, not a rollback)."""
        current = self.get_alias(pipeline, "champion")
        if current is None:
            raise RegistryError(f"{pipeline} has no champion to roll back")
        promoted: list[str] = []  # champions in promotion order, minus those rolled back
        for move in self.alias_history(pipeline, "champion"):
            if move.rollback:
                if promoted:
                    promoted.pop()
            elif move.version is not None:
                promoted.append(move.version)
        if len(promoted) < 2:
            raise RegistryError(f"{pipeline}: champion {current} has no earlier champion to roll back to")
        return self.set_alias(
            pipeline, "champion", promoted[-2], actor=actor, reason=f"rollback from {current}", rollback=True
        )

    # ------------------------------------------------------------ monitoring and cards (mutable, per version)

    def record_drift(self, pipeline: str, version: str, entry: dict[str, Any]) -> None:
        stamp = f"{utcnow():%Y%m%dT%H%M%S%f}-{secrets.token_hex(2)}"
        self.store.put(f"{pipeline}/drift_history/{version}/{stamp}.json", json.dumps(entry, default=str).encode())

    def drift_history(self, pipeline: str, version: str) -> list[dict[str, Any]]:
        return [json.loads(self.store.get(k)) for k in self.store.list(f"{pipeline}/drift_history/{version}/")]

    def artifact_bytes(self, pipeline: str, version: str, name: str) -> bytes:
        """One artifact, checksum verified."""
        expected = self.get_version(pipeline, version).artifacts.get(name)
        key = f"{pipeline}/versions/{version}/artifacts/{name}"
        if expected is None:
            raise RegistryError(f"{pipeline} {version} has no artifact {name!r}")
        data = self.store.get(key)
        if sha256_bytes(data) != expected:
            raise ChecksumError(f"{self.store.uri(key)}: checksum mismatch; refusing to load")
        return data

    def card_key(self, pipeline: str, version: str, suffix: str) -> str:
        return f"{pipeline}/cards/{version}.{suffix}"

    def pipelines(self) -> list[str]:
        keys = self.store.list("")
        # only committed versions count: a killed first write must not make a pipeline appear
        return sorted({k.split("/", 1)[0] for k in keys if self._is_record_key(k)})
