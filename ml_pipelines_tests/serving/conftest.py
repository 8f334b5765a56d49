"""The two versions the serving test modules serve, trained once per test session: one pair
of trainings (about 15 s) instead of one per module. Each module copies the trained root
into its own, so none sees another's aliases, audit trail or damaged model files."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from filelock import FileLock

from ml_pipelines.spec import PipelineSpec
from ml_pipelines_tests.helpers import materialize
from ml_pipelines_tests.serving.test_serving import PIPELINE, serving_spec

C_VALUES = (1.0, 0.02)  # LogisticRegression's C: the older version, then the champion


@dataclass(frozen=True)
class TrainedVersions:
    root: Path  # read-only: copy it (copy_to)
    first: str  # the older version
    second: str  # the champion
    spec: PipelineSpec  # the champion's

    def copy_to(self, root: Path) -> Path:
        shutil.copytree(self.root, root, symlinks=True)
        return root


@pytest.fixture(scope="session")
def trained_versions(tmp_path_factory, worker_id) -> TrainedVersions:
    """Trained by whichever xdist worker asks first, under a file lock; the others wait for it and
    read what it wrote (pytest-xdist's recipe for a session fixture that runs once)."""
    shared = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        shared = shared.parent  # the session's directory, common to every worker
    done = shared / "serving-versions.json"
    with FileLock(str(shared / "serving-versions.lock")):
        if not done.exists():
            root = shared / "serving-versions"
            shutil.rmtree(root, ignore_errors=True)  # what a worker that failed here left
            root.mkdir()
            versions = []
            for c in C_VALUES:
                result = materialize(serving_spec(c), root)
                assert result.success, result.step_errors()
                versions.append(result.registry.get_alias(PIPELINE, "champion"))
            assert versions[0] != versions[1], versions
            done.write_text(json.dumps({"root": str(root), "first": versions[0], "second": versions[1]}))
    written = json.loads(done.read_text())
    return TrainedVersions(Path(written["root"]), written["first"], written["second"], serving_spec(C_VALUES[-1]))
