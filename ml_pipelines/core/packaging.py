"""Packaging a candidate that meets the gate's floor: package_version() turns the
selected model, its evaluation and its features into an immutable registry version,
the same model in the BentoML store, a built bento (exported to S3 when configured),
an alias and a model card. The alias is `champion` when the candidate beats the
champion by the gate's rule, else `challenger` (recorded, shadow-scored when the
spec asks, never served to callers). The model_package asset and the benchmark's plain-Python
baseline both call it, so there is one packaging workflow.

A version becomes visible only when it can be served and rebuilt: artifacts, the
snapshot of what it was built from (core.snapshots), BentoML model, bento and export
are made first, and the registry record that names them is committed last. Within a run the version id is derived from the run id, so a
retried step rebuilds the same uncommitted version (replacing what a failed or
killed attempt left) or, when the record is already committed, only finishes the
promotion and the card. Child processes die with the step (core.child_process).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from ml_pipelines import __version__
from ml_pipelines.core.bento_store import (
    BENTO_TAG_LINE,
    MODEL_TAG_LINE,
    RECORD_FILE,
    BentoModelRef,
    bentoml_model_ref,
    store_path,
)
from ml_pipelines.core.champion import CHALLENGER, CHAMPION
from ml_pipelines.core.child_process import run_child, stream_child
from ml_pipelines.core.errors import GateFailed
from ml_pipelines.core.evaluation import Evaluation
from ml_pipelines.core.features import FeatureSet
from ml_pipelines.core.gate import GateDecision, gate_for
from ml_pipelines.core.identifiers import new_version_id, version_id_for_run
from ml_pipelines.core.model_card import publish_card
from ml_pipelines.core.model_io import save_model
from ml_pipelines.core.monitoring import PROFILE_FILE, reference_profile
from ml_pipelines.core.records import ServingPackage, Trigger, VersionRecord, jsonable
from ml_pipelines.core.registry import ModelRegistry
from ml_pipelines.core.retrain_data import Provenance
from ml_pipelines.core.selection import SelectionResult
from ml_pipelines.core.snapshots import check_data_present, stage_snapshot
from ml_pipelines.core.sources import describe_source
from ml_pipelines.core.storage import ObjectStore
from ml_pipelines.settings import Settings
from ml_pipelines.spec import PipelineSpec, trusted_roots

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BENTO_BUILD_TIMEOUT_S = 600


class Stage(StrEnum):
    """What package_version has done so far; logged as `<pipeline> <version>: <stage>`."""

    STARTED = "packaging"
    RESUMED = "already committed; finishing promotion and card"
    ARTIFACTS_STAGED = "artifacts staged"
    BENTOML_SAVED = "BentoML model saved"
    BUILDING_BENTO = "building the bento"
    BENTO_BUILT = "bento built"
    EXPORTED = "bento exported"
    COMMITTED = "record committed"
    PROMOTED = "alias moved"
    CARD_PUBLISHED = "model card published"


@dataclass(frozen=True)
class PackagedVersion:
    """What packaging made: the registry record, the BentoML model, the bento, the card."""

    record: VersionRecord
    bentoml_model: BentoModelRef
    bento_tag: str
    previous_champion: str | None  # what the alias pointed at before (champion or challenger)
    card: dict[str, str]  # md / html -> URI
    registry_uri: str
    alias: str = CHAMPION  # champion, or challenger when the candidate did not beat the champion

    @property
    def version(self) -> str:
        return self.record.version


def code_version(spec: PipelineSpec) -> str:
    """Changes when the package or the spec changes: Dagster's code version for every asset."""
    return f"{__version__}-{spec.spec_hash()}"


def version_for(trigger: Trigger) -> str:
    """The run's own version id, the same on every attempt; a fresh one outside a run."""
    return version_id_for_run(trigger.run_id) if trigger.run_id is not None else new_version_id()


def bento_tag_for(pipeline: str, version: str) -> str:
    return f"{pipeline.replace('_', '-')}:{version}"


def export_key(pipeline: str, version: str) -> str:
    return f"{pipeline}/{version}.bento"


@dataclass(frozen=True)
class _Target:
    """Where one packaging writes: the registry, the BentoML home and the optional export store."""

    registry: ModelRegistry
    bentoml_home: Path
    export_store: ObjectStore | None
    child_env: Mapping[str, str] | None
    say: Callable[[Stage], None]
    log: Callable[[str], None] | None = None


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
    """Build, commit and alias one version; raises GateFailed when the candidate fails the floor
    (nothing that fails it reaches the registry).

    Safe to call again for the same run after any failure: it never makes a second version."""
    decision = gate_for(spec, evaluation)
    if not decision.meets_floor:
        raise GateFailed(f"{spec.name}: the candidate fails the gate's floor: {decision.explain()}")
    alias = CHAMPION if decision.passed else CHALLENGER
    name, version = spec.name, version_for(trigger)

    def say(stage: Stage) -> None:
        if log is not None:
            log(f"{name} {version}: {stage}")

    target = _Target(registry, bentoml_home, export_store, child_env, say, log)
    say(Stage.STARTED)
    resumed = registry.has_version(name, version)
    if resumed:
        say(Stage.RESUMED)
        record = registry.require_servable(name, version)
    else:
        fields = record_fields(spec, selection, evaluation, features, decision, trigger)
        record = _build_and_commit(target, spec, version, selection, evaluation, features, fields)
    previous = _move_once(registry, record, alias, trigger, decision, resumed=resumed)
    say(Stage.PROMOTED)
    if log is not None:
        log(f"{name} {version} is {alias} (previous: {previous})")
    card = publish_card(registry, name, version)
    say(Stage.CARD_PUBLISHED)
    package = record.package
    if package is None:  # require_servable and _build_and_commit both rule this out
        raise RuntimeError(f"{name} {version}: committed without a serving package")
    model = bentoml_model_ref(bentoml_home, package.bentoml_model)
    uri = registry.store.uri(f"{registry.version_prefix(name, version)}/{RECORD_FILE}")
    return PackagedVersion(record, model, package.bento, previous, card, uri, alias)


def _build_and_commit(
    target: _Target, spec: PipelineSpec, version: str, selection: SelectionResult, evaluation: Evaluation,
    features: FeatureSet, fields: dict[str, Any],
) -> VersionRecord:
    """Everything serving needs, then the record: the commit point. What an earlier
    attempt at this version left (staged artifacts, snapshot, BentoML model, bento) is replaced."""
    registry, home, name = target.registry, target.bentoml_home, spec.name
    package = ServingPackage(
        bentoml_model=f"{name}:{version}",
        bento=bento_tag_for(name, version),
        export=target.export_store.uri(export_key(name, version)) if target.export_store is not None else None,
    )
    with tempfile.TemporaryDirectory(prefix=f"{name}-package-") as tmp:
        artifact_dir = Path(tmp) / "artifacts"
        artifact_dir.mkdir()
        record = stage_version(registry, spec, version, artifact_dir, selection, evaluation, features,
                               package=package, **fields)
        target.say(Stage.ARTIFACTS_STAGED)
        (artifact_dir / RECORD_FILE).write_bytes(record.to_json())  # lets a bento serve without the registry
        discard_uncommitted(home, package)
        details = Path(tmp) / "bentoml-model.json"
        details.write_text(json.dumps({"labels": _labels(name, record), "metadata": _bentoml_metadata(record)}))
        built = build_bento(name, version, bentoml_home=home, env=target.child_env,
                            model=(artifact_dir, details), on_line=_build_output(target))
    if built != package.bento:
        raise RuntimeError(f"bento build for {name}:{version} made {built!r}, expected {package.bento!r}")
    target.say(Stage.BENTO_BUILT)
    if target.export_store is not None:
        archive = export_bento(built, bentoml_home=home, env=target.child_env)
        target.export_store.put(export_key(name, version), archive)
        target.say(Stage.EXPORTED)
    commit_version(registry, record)
    target.say(Stage.COMMITTED)
    return record


def stage_version(
    registry: ModelRegistry, spec: PipelineSpec, version: str, artifact_dir: Path, selection: SelectionResult,
    evaluation: Evaluation, features: FeatureSet, /, **fields: Any,
) -> VersionRecord:
    """Upload a version's artifacts (written into artifact_dir) and its snapshot (core.snapshots: spec,
    environment, split, and the training data the features step stored), uncommitted; returns the
    record that commit_version makes visible."""
    write_artifacts(artifact_dir, selection, evaluation, features)
    record = registry.stage(spec.name, artifact_dir, version=version, **fields)
    return replace(record, snapshot=stage_snapshot(registry, spec, features, version))


def commit_version(registry: ModelRegistry, record: VersionRecord) -> VersionRecord:
    """The commit point: the record, once the shared training data it names is known to be there."""
    if record.snapshot is not None:
        check_data_present(registry, record.snapshot)
    return registry.commit(record)


def _build_output(target: _Target) -> Callable[[str], None]:
    """The build child's lines into the run log; its saved model as the BENTOML_SAVED stage."""

    def on_line(line: str) -> None:
        if target.log is not None:
            target.log(f"bento build: {line}")
        if line.startswith(MODEL_TAG_LINE):
            target.say(Stage.BENTOML_SAVED)
            target.say(Stage.BUILDING_BENTO)

    return on_line


def _move_once(
    registry: ModelRegistry, record: VersionRecord, alias: str, trigger: Trigger, decision: GateDecision, *,
    resumed: bool,
) -> str | None:
    """Point the alias at the version unless this run already did (a retry after the move); the previous one."""
    actor = f"run {trigger.run_id}"
    if resumed:
        done = [m for m in registry.alias_history(record.pipeline, alias)
                if m.version == record.version and m.actor == actor]
        if done:
            return done[-1].previous
    move = registry.set_alias(record.pipeline, alias, record.version, actor=actor, reason=decision.explain())
    return move.previous


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
            "bootstrap_block_rows": evaluation.bootstrap_block_rows,  # to draw the same resamples again
            "selection": {"metric": selection.metric, "cv_mean": best.mean, "cv_std": best.std,
                          "cv_rows": selection.cv_rows, "train_rows": selection.train_rows,
                          "how": selection.describe_sample()},
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


def discard_uncommitted(bentoml_home: Path, package: ServingPackage) -> None:
    """Remove the BentoML model and bento of a version that is not committed (what a failed or
    killed attempt left, possibly half written), so the retry can make them again."""
    for store, tag in (("models", package.bentoml_model), ("bentos", package.bento)):
        shutil.rmtree(store_path(bentoml_home, store, tag), ignore_errors=True)


def build_bento(
    pipeline: str, version: str, *, bentoml_home: Path, env: Mapping[str, str] | None = None,
    timeout: float = BENTO_BUILD_TIMEOUT_S, on_line: Callable[[str], None] | None = None,
    model: tuple[Path, Path] | None = None,
) -> str:
    """Build `<pipeline>:<version>` into bentoml_home's bento store; returns the bento tag. With
    model (an artifact directory, a JSON file of labels and metadata), the BentoML model
    `<pipeline>:<version>` is saved into bentoml_home's model store first, by the same child.

    The build imports the service module, which reads its configuration from the
    environment, so it runs in a subprocess (ml_pipelines.serving.bento) with that
    environment set; the subprocess dies with this process. Its output (stdout and
    stderr) goes to on_line line by line as it is written (the run log, in a run)."""
    child = {
        **(env if env is not None else Settings.from_env().child_env()),
        "ML_PIPELINES_SERVE_PIPELINE": pipeline,
        "ML_PIPELINES_SERVE_FROM": "bento",  # the record ships inside the BentoML model
        "ML_PIPELINES_SERVE_BUILDING": "1",  # declare the service; the model's files are checked, not loaded
        "BENTOML_HOME": str(bentoml_home),
        "BENTOML_DO_NOT_TRACK": "True",
    }
    returncode, lines = stream_child(
        [sys.executable, "-m", "ml_pipelines.serving.bento", pipeline, version, *map(str, model or ())],
        env=child, cwd=PROJECT_ROOT, timeout=timeout, on_line=on_line or (lambda _line: None),
    )
    tags = [line.removeprefix(BENTO_TAG_LINE) for line in lines if line.startswith(BENTO_TAG_LINE)]
    if returncode != 0 or not tags:
        output = "\n".join(lines)[-3000:]
        raise RuntimeError(f"bento build for {pipeline}:{version} failed (exit status {returncode}):\n{output}")
    return tags[-1]


def export_bento(
    tag: str, *, bentoml_home: Path, env: Mapping[str, str] | None = None, timeout: float = BENTO_BUILD_TIMEOUT_S
) -> bytes:
    """The bento as one archive (what `bentoml import` reads back); the export dies with this process."""
    with tempfile.TemporaryDirectory(prefix="bento-export-") as tmp:
        target = Path(tmp) / "bento.bento"
        child = {
            **(env if env is not None else Settings.from_env().child_env()),
            "BENTOML_HOME": str(bentoml_home),
            "BENTOML_DO_NOT_TRACK": "True",
        }
        result = run_child([sys.executable, "-m", "bentoml", "export", tag, str(target)], env=child, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"bentoml export {tag} failed:\n{result.stderr[-3000:]}")
        return target.read_bytes()
