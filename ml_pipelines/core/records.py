"""What the registry stores about a version, typed: the contract between training
and serving (the model's inputs, classes, schema and serving settings) and its
lineage. Serialized as JSON (record.json); records written before these fields
were typed kept schema, serving and trusted_roots under `extra` and still load."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any

import numpy as np

from ml_pipelines.core.retrain_data import Provenance
from ml_pipelines.core.validation import ResolvedSchema
from ml_pipelines.spec import ServingSpec


def jsonable(value: Any) -> Any:
    """numpy scalars, tuples and dataclasses into plain JSON types."""
    if is_dataclass(value) and not isinstance(value, type):
        return jsonable(asdict(value))
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


@dataclass(frozen=True)
class Trigger:
    run_id: str | None = None
    kind: str = "manual"  # manual | schedule | sensor | cli | demo: what started the run
    name: str | None = None  # the schedule's or sensor's name
    reason: str = "manual"  # why it retrained: drift | performance | schedule | manual
    detail: str = ""  # e.g. "drift in partition batch-1.csv: 40% of features drifted"


@dataclass(frozen=True)
class ModelInputs:
    """The columns a model reads and how: what serving validates requests against."""

    inputs: list[str] = field(default_factory=list)  # raw columns, in order
    numeric: list[str] = field(default_factory=list)  # model features, derived ones included
    categorical: list[str] = field(default_factory=list)
    derived: list[dict[str, Any]] = field(default_factory=list)
    types: dict[str, str] = field(default_factory=dict)  # input -> float | int | category | str | bool | datetime
    nullable: dict[str, bool] = field(default_factory=dict)
    lineage: dict[str, list[str]] = field(default_factory=dict)  # feature -> the inputs it is computed from
    train_rows: int = 0
    test_rows: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelInputs:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def type_of(self, column: str) -> str:
        return self.types.get(column, "float")

    def is_nullable(self, column: str) -> bool:
        return self.nullable.get(column, True)


@dataclass(frozen=True)
class ServingPackage:
    """What serving a version needs, made before its record is committed: the record names them."""

    bentoml_model: str  # tag in the BentoML model store, `<pipeline>:<version>`
    bento: str  # tag of the built bento
    export: str | None = None  # URI of the exported bento archive, when packaging exports one


@dataclass(frozen=True)
class StoredFile:
    """One object a version keeps in the registry's store, by key; its sha256 is checked on every read."""

    key: str
    sha256: str
    bytes: int

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StoredFile:
        return cls(str(data["key"]), str(data["sha256"]), int(data["bytes"]))


@dataclass(frozen=True)
class Snapshot:
    """What a version was built from (core.snapshots): its training data as it entered `features`
    (shared by every version built from the same data), its spec, its environment and its split."""

    files: dict[str, StoredFile]  # data.parquet, spec.yaml, environment.json, split.parquet
    data_rows: int
    seeds: dict[str, Any]  # every seed the build used, by what it seeds
    split: dict[str, Any]  # holdout (random | time | newest production rows), stratified, train_rows, test_rows

    @property
    def bytes(self) -> int:
        return sum(f.bytes for f in self.files.values())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Snapshot:
        files = {name: StoredFile.from_dict(f) for name, f in data["files"].items()}
        return cls(files, int(data["data_rows"]), dict(data.get("seeds") or {}), dict(data.get("split") or {}))


@dataclass(frozen=True)
class VersionRecord:
    pipeline: str
    version: str
    created_at: str
    data_version: str
    code_version: str
    spec_hash: str
    model_name: str
    framework: str
    params: dict[str, Any]
    metrics: dict[str, float]
    artifacts: dict[str, str]  # file name -> sha256
    libraries: dict[str, str]
    trigger: Trigger
    partitions: list[str] = field(default_factory=list)
    task: str = ""
    target: str = ""
    classes: list[Any] | None = None
    # the serving contract
    features: ModelInputs = field(default_factory=ModelInputs)
    schema: ResolvedSchema | None = None  # the rules the training data met
    serving: ServingSpec = field(default_factory=ServingSpec)
    trusted_roots: tuple[str, ...] = ()  # packages a loaded model may hold types from
    # what it learned from: rows from the source and from each labelled production batch
    provenance: Provenance = field(default_factory=lambda: Provenance(0))
    # what explains the version: gate, intervals, selection, description, source, slices
    extra: dict[str, Any] = field(default_factory=dict)
    # None in records written before packaging was atomic: nothing says such a version can be served
    package: ServingPackage | None = None
    # what it was built from, for `ml-pipelines reproduce` and `diff`; None in records written before snapshots
    snapshot: Snapshot | None = None

    def to_json(self) -> bytes:
        data = asdict(self)
        data["schema"] = self.schema.to_dict() if self.schema is not None else None
        data["serving"] = self.serving.model_dump()
        data["trusted_roots"] = list(self.trusted_roots)
        data["provenance"] = self.provenance.to_dict()
        return json.dumps(data, indent=2, sort_keys=True, default=str).encode()

    @classmethod
    def from_json(cls, data: bytes) -> VersionRecord:
        raw = json.loads(data)
        extra = dict(raw.get("extra") or {})
        schema = raw.pop("schema", None) or extra.pop("schema", None)
        serving = raw.pop("serving", None) or extra.pop("serving", None) or {}
        trusted = raw.pop("trusted_roots", None) or extra.pop("trusted_roots", None) or ()
        package = raw.pop("package", None)
        snapshot = raw.pop("snapshot", None)
        return cls(
            **{
                **raw,
                "trigger": Trigger(**raw["trigger"]),
                "features": ModelInputs.from_dict(raw.get("features") or {}),
                "schema": ResolvedSchema.from_dict(schema) if schema else None,
                "serving": ServingSpec.model_validate(serving),
                "trusted_roots": tuple(trusted),
                "provenance": Provenance.from_dict(raw.get("provenance") or {}),
                "extra": extra,
                "package": ServingPackage(**package) if package else None,
                "snapshot": Snapshot.from_dict(snapshot) if snapshot else None,
            }
        )


@dataclass(frozen=True)
class AliasMove:
    pipeline: str
    alias: str
    version: str | None
    previous: str | None  # the version the move before this one set
    moved_at: str
    actor: str
    reason: str
    rollback: bool = False
    sequence: int | None = None  # 1, 2, 3, ... per pipeline and alias; None for moves logged before numbering
    # the move whose version a rollback from here returns to (0: work it out from the moves before numbering)
    rollback_to: int | None = None

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=2).encode()

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> AliasMove:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})

    @classmethod
    def from_json(cls, data: bytes) -> AliasMove:
        return cls.from_dict(json.loads(data))
