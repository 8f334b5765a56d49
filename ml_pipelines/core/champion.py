"""The current champion: the one way to find it and load what callers need of it
(its record, its model, its training schema, its reference profile)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from sklearn.pipeline import Pipeline

from ml_pipelines.core.drift import ReferenceProfile
from ml_pipelines.core.errors import NoChampion
from ml_pipelines.core.monitoring import PROFILE_FILE
from ml_pipelines.core.records import VersionRecord
from ml_pipelines.core.registry import ModelRegistry
from ml_pipelines.core.validation import ResolvedSchema

CHAMPION = "champion"
CHALLENGER = "challenger"  # met the floor but did not beat the champion; shadow-scored when serving.shadow


@dataclass(frozen=True)
class Champion:
    version: str
    model: Pipeline
    recorded_metrics: dict[str, float]  # from its version record, used if it cannot score these rows


def champion_record(registry: ModelRegistry, pipeline: str) -> VersionRecord | None:
    version = registry.get_alias(pipeline, CHAMPION)
    return registry.get_version(pipeline, version) if version is not None else None


def load_champion(registry: ModelRegistry, pipeline: str, trusted_roots: tuple[str, ...]) -> Champion | None:
    """The champion's model, checksums verified; it may hold types from trusted_roots (the spec's packages)."""
    record = champion_record(registry, pipeline)
    if record is None:
        return None
    model = registry.load_model(pipeline, record.version, trusted_roots)
    return Champion(record.version, model, record.metrics)


def champion_schema(registry: ModelRegistry, pipeline: str) -> tuple[ResolvedSchema | None, str | None]:
    """The schema the champion was trained under (the reference for inferred rules), and its version."""
    record = champion_record(registry, pipeline)
    if record is None:
        return None, None
    return record.schema, record.version


def champion_profile(registry: ModelRegistry, pipeline: str) -> tuple[str, ReferenceProfile]:
    """The champion's reference profile (what drift is measured against)."""
    version = registry.get_alias(pipeline, CHAMPION)
    if version is None:
        raise NoChampion(f"{pipeline}: no champion yet, so there is no reference to measure drift against")
    with tempfile.TemporaryDirectory(prefix="ml_pipelines-profile-") as tmp:
        directory = registry.fetch_artifacts(pipeline, version, Path(tmp))  # checksums verified
        profile_path = directory / PROFILE_FILE
        if not profile_path.exists():
            raise NoChampion(f"{pipeline}: champion {version} has no reference profile; retrain it")
        return version, ReferenceProfile.from_bytes(profile_path.read_bytes())


def unchanged_version(
    registry: ModelRegistry, pipeline: str, *, data_version: str, spec_hash: str, code_version: str
) -> VersionRecord | None:
    """The champion or challenger built from exactly this data, spec and code, if there is one:
    retraining it would produce the same model again."""
    for alias in (CHAMPION, CHALLENGER):
        version = registry.get_alias(pipeline, alias)
        if version is None:
            continue
        record = registry.get_version(pipeline, version)
        if (record.data_version, record.spec_hash, record.code_version) == (data_version, spec_hash, code_version):
            return record
    return None
