"""core.packaging.package_version is atomic and retry-safe: a version is listed only when
everything serving needs (artifacts, BentoML model, bento) exists; a failed or killed
attempt leaves nothing listed and no child process running; a retry of the same run
makes exactly one version, and a retry after the commit only finishes the promotion and card.

The candidate (a small credit_default model) is trained once per module. A first version,
packaged by another run, is the champion every test starts from (`world`). Killed attempts
run in a subprocess that stops at a named packaging stage (its log line) until killed.
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest

from ml_pipelines.core import packaging
from ml_pipelines.core.identifiers import version_id_for_run
from ml_pipelines.core.records import Trigger
from ml_pipelines.core.registry import ModelRegistry
from ml_pipelines.core.snapshots import store_training_data
from ml_pipelines.core.storage import LocalObjectStore
from ml_pipelines_tests import REPO_ROOT
from ml_pipelines_tests.core.test_child_process import is_alive, wait_until
from ml_pipelines_tests.helpers import bentoml_models
from ml_pipelines_tests.specs import NAME, make_spec, small_credit_attributes

pytestmark = pytest.mark.usefixtures("one_thread")

FIRST_RUN = "first-run"
RUN = "retrained-run"


@dataclass(frozen=True)
class Candidate:
    spec: object
    selection: object
    evaluation: object
    features: object
    pickled: Path  # the same four, for a subprocess
    frame: object  # the data the features came from, stored in each registry a test packages into


@pytest.fixture(scope="module")
def candidate(tmp_path_factory, one_thread) -> Candidate:
    from ml_pipelines.core.evaluation import evaluate_for_spec
    from ml_pipelines.core.features import build_feature_set
    from ml_pipelines.core.hashing import frame_hash
    from ml_pipelines.core.plots import evaluation_plots
    from ml_pipelines.core.selection import select_for_spec
    from ml_pipelines.core.sources import load_source
    from ml_pipelines.core.validation import spec_schema

    spec = make_spec(**small_credit_attributes(800))
    frame = load_source(spec.source, base_dir=None, env={}).frame
    schema = spec_schema(spec, frame, reference=None)
    features = build_feature_set(spec, frame).with_lineage(data_version=frame_hash(frame), schema=schema, partitions=())
    # what the features step does: the data in the registry (each test's registry gets it again, in package())
    stored = store_training_data(registry_of(tmp_path_factory.mktemp("data")), NAME, frame, features.data_version)
    features = features.with_data_snapshot(stored)
    selection = select_for_spec(spec, features)
    evaluation = evaluate_for_spec(spec, selection.model, features, champion=None)
    evaluation.plots = evaluation_plots(evaluation, spec.task, spec.gate_metric)
    pickled = tmp_path_factory.mktemp("candidate") / "candidate.pickle"
    pickled.write_bytes(pickle.dumps((spec, selection, evaluation, features)))  # written here, read by our own child
    return Candidate(spec, selection, evaluation, features, pickled, frame)


def registry_of(root: Path) -> ModelRegistry:
    return ModelRegistry(LocalObjectStore(root / "registry"))


def package(candidate: Candidate, root: Path, run_id: str, **kwargs) -> packaging.PackagedVersion:
    registry = registry_of(root)
    store_training_data(registry, NAME, candidate.frame, candidate.features.data_version)
    return packaging.package_version(
        candidate.spec, candidate.selection, candidate.evaluation, candidate.features,
        registry=registry, bentoml_home=root / "bentoml", trigger=Trigger(run_id, "manual"), **kwargs,
    )


@pytest.fixture(scope="module")
def first_world(candidate, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("first-world")
    package(candidate, root, FIRST_RUN)
    return root


@pytest.fixture
def world(first_world, tmp_path) -> Path:
    """A registry and BentoML home whose champion is FIRST_RUN's version, for this test alone."""
    root = tmp_path / "world"
    shutil.copytree(first_world, root, symlinks=True)
    return root


def assert_servable(root: Path, version: str) -> None:
    """The record names a BentoML model and a bento, and BentoML's own stores load both."""
    from bentoml._internal.bento import BentoStore

    record = registry_of(root).get_version(NAME, version)
    assert record.package is not None, f"{version} names no package"
    model = bentoml_models(root / "bentoml").get(record.package.bentoml_model)
    assert (Path(model.path) / packaging.RECORD_FILE).read_bytes() == record.to_json()
    bento = BentoStore(root / "bentoml" / "bentos").get(record.package.bento)
    assert str(bento.tag) == record.package.bento
    # the environment that serves the bento's own model (declared by the service, public API): the same
    # for every version, which the bento names in its arguments instead (its image's layers stay cached)
    assert {e.name: e.value for e in bento.info.envs} == {
        "ML_PIPELINES_SERVE_PIPELINE": NAME, "ML_PIPELINES_SERVE_FROM": "bento"}
    assert bento.info.args == {"version": version}
    # its image (bentoml containerize): the serving libraries at the versions that packaged it; no torch for an
    # sklearn model, and none of BentoML's default apt-get of a compiler and git
    requirements = bento.info.image.python_requirements.split()
    assert f"scikit-learn=={metadata.version('scikit-learn')}" in requirements
    assert f"pandas=={metadata.version('pandas')}" in requirements
    assert not [r for r in requirements if r.startswith("torch")]
    assert bento.info.image.commands == [] and bento.info.image.base_image == "python:3.11-slim"


def assert_consistent(root: Path, new_version: str) -> None:
    """Only servable versions are listed, and the champion is the first one or the new one."""
    registry = registry_of(root)
    listed = [r.version for r in registry.list_versions(NAME)]
    first = version_id_for_run(FIRST_RUN)
    assert listed in ([first], [first, new_version])
    for version in listed:
        assert_servable(root, version)
    assert registry.get_alias(NAME, "champion") in {first, *listed}


def assert_retried_once(root: Path, candidate: Candidate) -> None:
    """A retry of RUN ends with exactly one new version, champion, promoted once, with its card."""
    new = version_id_for_run(RUN)
    packaged = package(candidate, root, RUN)
    registry = registry_of(root)
    assert packaged.version == new
    assert [r.version for r in registry.list_versions(NAME)] == [version_id_for_run(FIRST_RUN), new]
    assert registry.get_alias(NAME, "champion") == new
    assert [m.version for m in registry.alias_history(NAME, "champion") if m.actor == f"run {RUN}"] == [new]
    assert_servable(root, new)
    assert registry.store.exists(registry.card_key(NAME, new, "html"))


# ---------------------------------------------------------------- a failing bento build


def test_a_failing_bento_build_lists_nothing_and_a_rerun_makes_exactly_one_version(candidate, world, monkeypatch):
    registry = registry_of(world)
    first = version_id_for_run(FIRST_RUN)
    moves_before = registry.alias_history(NAME)

    def failing_build(pipeline, version, **_):
        raise RuntimeError(f"bento build for {pipeline}:{version} failed: made to fail by the test")

    monkeypatch.setattr(packaging, "build_bento", failing_build)
    for _attempt in range(3):  # the retry policy's attempts
        with pytest.raises(RuntimeError, match="made to fail by the test"):
            package(candidate, world, RUN)
        assert [r.version for r in registry.list_versions(NAME)] == [first]
        assert registry.get_alias(NAME, "champion") == first
        assert registry.alias_history(NAME) == moves_before
        assert registry.pipelines() == [NAME]

    monkeypatch.undo()
    assert_retried_once(world, candidate)


# ---------------------------------------------------------------- SIGKILL at each stage

PACKAGER = textwrap.dedent(
    """
    import pickle, sys, time
    from pathlib import Path
    from ml_pipelines.core import packaging
    from ml_pipelines.core.records import Trigger
    from ml_pipelines.core.registry import ModelRegistry
    from ml_pipelines.core.storage import LocalObjectStore
    from ml_pipelines.settings import Settings

    root, candidate, run_id, stop_at = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
    spec, selection, evaluation, features = pickle.loads(candidate.read_bytes())

    def log(message):
        # stop at the named stage (its log line) and wait to be killed; "" runs through
        if stop_at and message.endswith(": " + stop_at):
            print("STOPPED", flush=True)
            time.sleep(600)

    packaging.package_version(
        spec, selection, evaluation, features, registry=ModelRegistry(LocalObjectStore(root / "registry")),
        bentoml_home=root / "bentoml", trigger=Trigger(run_id, "manual"),
        child_env=Settings.from_env().child_env(ML_PIPELINES_HOME=str(root)), log=log,
    )
    print("DONE", flush=True)
    """
)


def start_packager(candidate: Candidate, root: Path, stop_at: str) -> subprocess.Popen:
    script = root.parent / "packager.py"
    script.write_text(PACKAGER)
    return subprocess.Popen(
        [sys.executable, str(script), str(root), str(candidate.pickled), RUN, stop_at],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def kill(process: subprocess.Popen) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL


STAGES = [
    packaging.Stage.ARTIFACTS_STAGED,
    packaging.Stage.BENTOML_SAVED,
    packaging.Stage.BENTO_BUILT,
    packaging.Stage.COMMITTED,
    packaging.Stage.PROMOTED,
]


@pytest.mark.parametrize("stage", STAGES, ids=[s.name.lower() for s in STAGES])
def test_packaging_killed_after_a_stage_leaves_only_servable_versions_and_a_retry_makes_one(
    candidate, world, stage
):
    process = start_packager(candidate, world, stage.value)
    try:
        line = process.stdout.readline()
        assert line.strip() == "STOPPED", (line, process.stderr.read() if process.poll() is not None else "")
        kill(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    new = version_id_for_run(RUN)
    assert_consistent(world, new)
    committed = stage in (packaging.Stage.COMMITTED, packaging.Stage.PROMOTED)
    assert registry_of(world).has_version(NAME, new) == committed
    assert_retried_once(world, candidate)


def bento_builds_of(pid: int) -> list[int]:
    """Live children of pid that are building a bento: past the launcher (core.child_process), whose
    command line names the build too, but which has not yet asked for its parent-death signal."""
    from ml_pipelines_tests.core.test_child_process import children_of

    return [
        child for child in children_of(pid)
        if b"ml_pipelines.serving.bento" in _cmdline(child) and b"PR_SET_PDEATHSIG" not in _cmdline(child)
    ]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_killing_packaging_during_the_bento_build_kills_the_build_and_commits_nothing(candidate, world):
    process = start_packager(candidate, world, "")
    builds: list[int] = []

    def build_started() -> bool:
        builds[:] = bento_builds_of(process.pid)  # kept as seen: a fast build may end before a second look
        return bool(builds) or process.poll() is not None

    try:
        assert wait_until(build_started, 120)
        assert builds, f"no bento build seen: {process.stderr.read() if process.poll() is not None else ''}"
        os.kill(builds[0], signal.SIGSTOP)  # frozen mid-build, so the packager is killed during it, not after
        kill(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    [build] = builds
    assert wait_until(lambda: not is_alive(build), 5), f"the bento build {build} outlived its killed step"
    new = version_id_for_run(RUN)
    assert not registry_of(world).has_version(NAME, new)
    assert_consistent(world, new)
    assert_retried_once(world, candidate)


def test_a_retry_after_the_promotion_does_not_move_the_champion_again(candidate, world):
    first = package(candidate, world, RUN)
    registry = registry_of(world)
    registry.rollback(NAME, actor="cli:oncall")  # someone moved the champion since
    again = package(candidate, world, RUN)
    assert again.version == first.version and again.previous_champion == first.previous_champion
    assert registry.get_alias(NAME, "champion") == version_id_for_run(FIRST_RUN)
    assert [m.version for m in registry.alias_history(NAME, "champion") if m.actor == f"run {RUN}"] == [first.version]


PRIVATE_BENTOML = re.compile(r"bentoml\._internal|_bentoml_(sdk|impl)|BentoEnvSchema|_model_store\s*=|_bento_store\s*=")


def test_the_package_uses_bentoml_public_apis_only():
    """A BentoML upgrade may move its internals; packaging and serving must not depend on them."""
    offenders = [
        f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()}"
        for path in sorted((REPO_ROOT / "ml_pipelines").rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if PRIVATE_BENTOML.search(line)
    ]
    assert not offenders, offenders


def test_the_bento_image_brings_torch_only_for_a_torch_model(tmp_path):
    """The serving image of an sklearn model has no torch (about 700 MB); a torch model's gets the CPU
    build of the version that trained it, from the PyTorch index (PyPI's torch pulls CUDA's packages)."""
    from ml_pipelines.core.model_io import PIPELINE_FILE, PREPROCESS_FILE
    from ml_pipelines.serving.bento import TORCH_INDEX, bento_image

    sklearn_model, torch_model = tmp_path / "sklearn", tmp_path / "torch"
    for folder, name in ((sklearn_model, PIPELINE_FILE), (torch_model, PREPROCESS_FILE)):
        folder.mkdir()
        (folder / name).write_bytes(b"")
    sklearn_requirements = bento_image(sklearn_model).python_requirements.splitlines()
    torch_requirements = bento_image(torch_model).python_requirements.splitlines()
    assert f"scikit-learn=={metadata.version('scikit-learn')}" in sklearn_requirements
    assert not [r for r in sklearn_requirements if "torch" in r]
    assert "+cpu" in metadata.version("torch")
    assert f"torch=={metadata.version('torch')}" in torch_requirements
    assert f"--extra-index-url {TORCH_INDEX}" in torch_requirements


@pytest.mark.parametrize("models", [
    [{"name": "logreg", "estimator": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 300}}],
    [{"name": "gbm", "estimator": "sklearn.ensemble.HistGradientBoostingClassifier", "params": {"max_iter": 20}}],
])
def test_the_reference_profile_scores_the_training_rows_in_chunks_to_the_same_values(monkeypatch, models):
    """The training rows are scored PREDICTION_CHUNK_ROWS at a time (the model's preprocessing copies
    what it scores): the values are those of one call over every row, within 1e-12 (a BLAS matrix
    product over another number of rows may round the last bit otherwise)."""
    import numpy as np

    from ml_pipelines.core import monitoring
    from ml_pipelines.core.features import build_feature_set
    from ml_pipelines.core.selection import select_for_spec
    from ml_pipelines.datasets.credit import generate

    attributes = small_credit_attributes()
    attributes["models"] = models
    spec = make_spec(**attributes)
    features = build_feature_set(spec, generate(rows=3_000, seed=2))
    model = select_for_spec(spec, features).model
    x_train, _ = features.xy("train")
    whole, categorical = monitoring.prediction_values(model, x_train, spec.task)
    monkeypatch.setattr(monitoring, "PREDICTION_CHUNK_ROWS", 7)
    chunked, chunked_categorical = monitoring.prediction_values(model, x_train, spec.task)
    assert len(chunked) == len(x_train) and chunked_categorical == categorical
    np.testing.assert_allclose(chunked, whole, rtol=0, atol=1e-12)


def test_the_bento_build_child_imports_no_sklearn(world):
    """The build declares the service and checks the model's files; it never makes or loads a
    model, so it skips sklearn's 1.3-1.9 s import (core.bento_store). Python's own import log of the
    child (PYTHONPROFILEIMPORTTIME) shows what it imported."""
    from ml_pipelines.core.bento_store import store_path
    from ml_pipelines.settings import Settings

    lines: list[str] = []
    version = version_id_for_run(FIRST_RUN)
    bento = f"{NAME.replace('_', '-')}:{version}"
    shutil.rmtree(store_path(world / "bentoml", "bentos", bento))  # built again, below
    tag = packaging.build_bento(NAME, version, bentoml_home=world / "bentoml", on_line=lines.append,
                                env={**Settings.from_env().child_env(), "PYTHONPROFILEIMPORTTIME": "1"})
    assert tag.lower() == bento.lower()
    imported = {line.rsplit("|", 1)[-1].strip() for line in lines if line.startswith("import time:")}
    assert {"bentoml", "ml_pipelines.serving.runtime", "pandas"} <= imported  # the service's own imports
    assert not [name for name in imported if name.split(".")[0] in ("sklearn", "skops", "torch")]
