"""Packaging a blessed candidate: package_version() turns the selected model, its
evaluation and its features into an immutable registry version, the same model in
the BentoML store, a built bento (exported to S3 when configured), the champion
alias and a model card. The model_package asset and the benchmark's plain-Python
baseline both call it, so there is one packaging workflow.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ml_pipelines import __version__
from ml_pipelines.core.errors import GateFailed
from ml_pipelines.core.evaluation import Evaluation
from ml_pipelines.core.features import FeatureSet
from ml_pipelines.core.gate import GateDecision, gate_for
from ml_pipelines.core.model_card import publish_card
from ml_pipelines.core.model_io import save_model
from ml_pipelines.core.monitoring import PROFILE_FILE, reference_profile
from ml_pipelines.core.records import Trigger, VersionRecord, jsonable
from ml_pipelines.core.registry import ModelRegistry
from ml_pipelines.core.retrain_data import Provenance
from ml_pipelines.core.selection import SelectionResult
from ml_pipelines.core.sources import describe_source
from ml_pipelines.core.storage import ObjectStore
from ml_pipelines.settings import Settings
from ml_pipelines.spec import PipelineSpec, trusted_roots

PROJECT_ROOT = Path(__file__).resolve().parents[2]
RECORD_FILE = "record.json"  # the version record, shipped inside the BentoML model
BENTO_BUILD_TIMEOUT_S = 600


@dataclass(frozen=True)
class BentoModelRef:
    tag: str
    path: str


@dataclass(frozen=True)
class PackagedVersion:
    """What packaging made: the registry record, the BentoML model, the bento, the card."""

    record: VersionRecord
    bentoml_model: BentoModelRef
    bento_tag: str
    previous_champion: str | None
    card: dict[str, str]  # md / html -> URI
    registry_uri: str

    @property
    def version(self) -> str:
        return self.record.version


def code_version(spec: PipelineSpec) -> str:
    """Changes when the package or the spec changes: Dagster's code version for every asset."""
    return f"{__version__}-{spec.spec_hash()}"


def package_version(
    spec: PipelineSpec,
    selection: SelectionResult,
    evaluation: Evaluation,
    features: FeatureSet,
    *,
    registry: ModelRegistry,
    bentoml_home: Path,
    trigger: Trigger,
    export_store: ObjectStore | None = None,
    child_env: Mapping[str, str] | None = None,
    log: Callable[[str], None] | None = None,
) -> PackagedVersion:
    """Register, store, build and promote one version; raises GateFailed when the gate does not pass."""
    decision = gate_for(spec, evaluation)
    if not decision.passed:
        raise GateFailed(f"{spec.name}: the promotion gate did not pass: {decision.explain()}")
    name = spec.name
    with tempfile.TemporaryDirectory(prefix=f"{name}-package-") as tmp:
        artifact_dir = Path(tmp)
        write_artifacts(artifact_dir, selection, evaluation, features)
        record = registry.register(
            name, artifact_dir, version=registry.new_version_id(),
            **record_fields(spec, selection, evaluation, features, decision, trigger),
        )
        (artifact_dir / RECORD_FILE).write_bytes(record.to_json())  # lets a bento serve without the registry
        model = save_bentoml_model(name, record.version, artifact_dir, bentoml_home=bentoml_home,
                                   labels=_labels(name, record), metadata=_bentoml_metadata(record))
    bento_tag = build_bento(name, record.version, bentoml_home=bentoml_home, env=child_env)
    if export_store is not None:
        archive = export_bento(bento_tag, bentoml_home=bentoml_home, env=child_env)
        export_store.put(f"{name}/{record.version}.bento", archive)
    move = registry.promote(name, record.version, actor=f"run {trigger.run_id}", reason=decision.explain())
    if log is not None:
        log(f"{name} {record.version} is champion (previous: {move.previous})")
    card = publish_card(registry, name, record.version)
    uri = registry.store.uri(f"{name}/versions/{record.version}/record.json")
    return PackagedVersion(record, model, bento_tag, move.previous, card, uri)


def write_artifacts(directory: Path, selection: SelectionResult, evaluation: Evaluation, features: FeatureSet) -> None:
    """The model, its reference profile (for drift) and the evaluation plots."""
    save_model(selection.model, directory)
    (directory / PROFILE_FILE).write_bytes(reference_profile(selection.model, features).to_bytes())
    for plot, png in evaluation.plots.items():
        (directory / "plots").mkdir(exist_ok=True)
        (directory / "plots" / f"{plot}.png").write_bytes(png)


def record_fields(
    spec: PipelineSpec,
    selection: SelectionResult,
    evaluation: Evaluation,
    features: FeatureSet,
    decision: GateDecision,
    trigger: Trigger,
) -> dict[str, Any]:
    """Everything a version record holds besides its id, time, artifacts and libraries."""
    best = selection.best
    return {
        "data_version": features.data_version,
        "code_version": code_version(spec),
        "spec_hash": spec.spec_hash(),
        "model_name": best.model_name,
        "framework": best.framework,
        "params": jsonable(best.params),
        "metrics": evaluation.metrics,
        "trigger": trigger,
        "partitions": list(features.partitions),
        "task": spec.task,
        "target": spec.target,
        "classes": jsonable(list(selection.model.classes_)) if spec.task == "classification" else None,
        "features": features.model_inputs(),
        "schema": features.schema,
        "serving": spec.serving,
        "trusted_roots": trusted_roots(spec),
        "provenance": features.provenance or Provenance(len(features.train) + len(features.test)),
        "extra": {
            "gate": jsonable(decision.__dict__),
            "intervals": {k: [v.low, v.high] for k, v in evaluation.intervals.items()},
            "selection": {"metric": selection.metric, "cv_mean": best.mean, "cv_std": best.std},
            "description": spec.description,
            "source": describe_source(spec.source),
            "slices": [jsonable(s.__dict__) for s in evaluation.slices],
        },
    }


def _labels(pipeline: str, record: VersionRecord) -> dict[str, str]:
    return {"pipeline": pipeline, "framework": record.framework, "model": record.model_name}


def _bentoml_metadata(record: VersionRecord) -> dict[str, Any]:
    metadata = {
        "metrics": record.metrics,
        "data_version": record.data_version,
        "spec_hash": record.spec_hash,
        "code_version": record.code_version,
        "libraries": record.libraries,
    }
    if record.trigger.run_id is not None:  # BentoML metadata takes no None
        metadata["run_id"] = record.trigger.run_id
    return metadata


# ---------------------------------------------------------------- BentoML


def model_store(bentoml_home: Path):
    # BentoML reads BENTOML_HOME once per process; an explicit store lets one
    # process (tests, the demo) write to the home its resource names.
    from bentoml._internal.models import ModelStore

    models = bentoml_home / "models"
    models.mkdir(parents=True, exist_ok=True)
    return ModelStore(models)


def save_bentoml_model(
    pipeline: str,
    version: str,
    artifact_dir: Path,
    *,
    bentoml_home: Path,
    labels: dict[str, str],
    metadata: dict[str, Any],
) -> BentoModelRef:
    import bentoml

    store = model_store(bentoml_home)
    tag = f"{pipeline}:{version}"
    with bentoml.models.create(
        tag, labels=labels, metadata=metadata, module="ml_pipelines.serving", _model_store=store
    ) as model:
        for path in artifact_dir.rglob("*"):
            if path.is_file():
                target = Path(model.path) / path.relative_to(artifact_dir)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
    stored = store.get(tag)
    return BentoModelRef(str(stored.tag), str(stored.path))


def build_bento(
    pipeline: str, version: str, *, bentoml_home: Path, env: Mapping[str, str] | None = None,
    timeout: float = BENTO_BUILD_TIMEOUT_S,
) -> str:
    """Build `<pipeline>:<version>` into bentoml_home's bento store; returns the bento tag.

    The build imports the service module, which reads its configuration from the
    environment, so it runs in a subprocess (ml_pipelines.serving.bento) with that
    environment set."""
    child = {
        **(env if env is not None else Settings.from_env().child_env()),
        "ML_PIPELINES_SERVE_PIPELINE": pipeline,
        "ML_PIPELINES_SERVE_VERSION": version,
        "ML_PIPELINES_SERVE_FROM": "bento",  # the record ships inside the BentoML model
        "BENTOML_HOME": str(bentoml_home),
        "BENTOML_DO_NOT_TRACK": "True",
    }
    result = subprocess.run(
        [sys.executable, "-m", "ml_pipelines.serving.bento", pipeline, version],
        env=child, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout,
    )
    if result.returncode != 0:
        raise RuntimeError(f"bento build for {pipeline}:{version} failed:\n{result.stderr[-3000:]}")
    return result.stdout.strip().splitlines()[-1]


def export_bento(
    tag: str, *, bentoml_home: Path, env: Mapping[str, str] | None = None, timeout: float = BENTO_BUILD_TIMEOUT_S
) -> bytes:
    """The bento as one archive (what `bentoml import` reads back)."""
    with tempfile.TemporaryDirectory(prefix="bento-export-") as tmp:
        target = Path(tmp) / "bento.bento"
        child = {**(env if env is not None else Settings.from_env().child_env()), "BENTOML_HOME": str(bentoml_home), "BENTOML_DO_NOT_TRACK": "True"}
        result = subprocess.run(
            [sys.executable, "-m", "bentoml", "export", tag, str(target)],
            env=child, capture_output=True, text=True, timeout=timeout,
        )
        if result.returncode != 0:
            raise RuntimeError(f"bentoml export {tag} failed:\n{result.stderr[-3000:]}")
        return target.read_bytes()
