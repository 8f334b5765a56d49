"""Rollbacks stack: each one undoes one promotion."""

import pytest

from ml_pipelines.core.records import ServingPackage, Trigger
from ml_pipelines.core.registry import ModelRegistry, RegistryError
from ml_pipelines.core.storage import LocalObjectStore


def _register(registry: ModelRegistry, artifacts) -> str:
    version = registry.new_version_id()
    record = registry.register(
        "p", artifacts, version=version, data_version="d", code_version="c", spec_hash="s", model_name="m",
        framework="sklearn", params={}, metrics={"r2": 0.5}, trigger=Trigger(),
        package=ServingPackage(f"p:{version}", f"p:{version}"),
    )
    registry.promote("p", record.version, actor="test", reason="promoted")
    return record.version


def test_two_rollbacks_go_two_champions_back_and_are_recorded(tmp_path):
    registry = ModelRegistry(LocalObjectStore(tmp_path / "registry"))
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    (artifacts / "model.bin").write_bytes(b"weights")
    v1, v2, v3 = (_register(registry, artifacts) for _ in range(3))

    first = registry.rollback("p", actor="test")
    assert (first.previous, first.version, first.rollback) == (v3, v2, True)
    second = registry.rollback("p", actor="test")
    assert (second.previous, second.version) == (v2, v1)
    assert registry.get_alias("p", "champion") == v1
    with pytest.raises(RegistryError, match="no earlier champion"):
        registry.rollback("p", actor="test")
    history = registry.alias_history("p", "champion")
    assert [m.version for m in history] == [v1, v2, v3, v2, v1]
    assert [m.rollback for m in history] == [False, False, False, True, True]


def test_a_promotion_after_a_rollback_starts_a_new_top(tmp_path):
    registry = ModelRegistry(LocalObjectStore(tmp_path / "registry"))
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    (artifacts / "model.bin").write_bytes(b"weights")
    v1, v2 = (_register(registry, artifacts) for _ in range(2))
    registry.rollback("p", actor="test")
    v3 = _register(registry, artifacts)
    assert registry.rollback("p", actor="test").version == v1
    assert registry.get_alias("p", "champion") == v1 and v3 != v2
