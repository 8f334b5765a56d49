"""`ml-pipelines registry ...` against a local registry written through the API (no training):
bad names and ids end every command with one `error:` line and exit 2, an incomplete version
is not promoted, and `registry history` prints every move in order (text and --json)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ml_pipelines.core.records import ServingPackage, Trigger
from ml_pipelines.core.registry import ModelRegistry
from ml_pipelines.core.storage import LocalObjectStore
from ml_pipelines_tests import REPO_ROOT

V1, V2, V3, LEGACY = "20260101-000000-000001", "20260101-000000-000002", "run-0123456789ab", "20260101-000000-00000f"


def cli(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "ML_PIPELINES_HOME": str(home), "ML_PIPELINES_ENV": "local"}
    return subprocess.run([sys.executable, "-m", "ml_pipelines.cli", "registry", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def register(registry: ModelRegistry, pipeline: str, version: str, artifacts: Path, *, servable: bool = True) -> None:
    package = ServingPackage(f"{pipeline}:{version}", f"{pipeline}:{version}") if servable else None
    registry.register(
        pipeline, artifacts, version=version, data_version="d", code_version="c", spec_hash="s", model_name="m",
        framework="sklearn", params={}, metrics={"roc_auc": 0.7}, trigger=Trigger("run"), package=package,
    )


@pytest.fixture
def home(tmp_path) -> Path:
    """ML_PIPELINES_HOME with `credit` (V1, V2, V3 and an old-style LEGACY) and `otherpipe` (V1)."""
    home = tmp_path / "home"
    registry = ModelRegistry(LocalObjectStore(home / "registry"))
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    (artifacts / "model.skops").write_bytes(b"model")
    for version in (V1, V2, V3):
        register(registry, "credit", version, artifacts)
    register(registry, "credit", LEGACY, artifacts, servable=False)
    register(registry, "otherpipe", V1, artifacts)
    return home


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


BAD = {
    "list /etc": (["list", "/etc"], "pipeline name '/etc' is not valid"),
    "list ..": (["list", ".."], "pipeline name '..' is not valid"),
    "show ../v": (["show", "credit", "../v"], "version id '../v' is not valid"),
    "show in another pipeline": (["show", "credit", f"../../otherpipe/versions/{V1}"], "version id '../../otherpipe"),
    "promote another pipeline's version": (["promote", "dq", f"../../otherpipe/versions/{V1}"], "version id"),
    "promote into a path": (["promote", "../otherpipe", V1], "pipeline name '../otherpipe' is not valid"),
    "rollback a path": (["rollback", "credit/../otherpipe"], "pipeline name 'credit/../otherpipe' is not valid"),
    "history /etc": (["history", "/etc"], "pipeline name '/etc' is not valid"),
    "history a path --json": (["history", "../credit", "--json"], "pipeline name '../credit' is not valid"),
}


@pytest.mark.parametrize(("args", "message"), BAD.values(), ids=BAD.keys())
def test_a_bad_name_or_id_is_one_error_line_and_exit_2(home, tmp_path, args, message):
    before = tree(tmp_path)
    done = cli(*args, home=home)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stdout.startswith(f"error: {message}")
    assert len(done.stdout.splitlines()) == 1
    assert "Traceback" not in done.stderr and done.stderr == ""
    assert tree(tmp_path) == before  # nothing written, here or in the other pipeline


def test_promote_refuses_an_old_style_version_that_names_no_bento(home):
    done = cli("promote", "credit", LEGACY, home=home)
    assert done.returncode == 2
    assert done.stdout.strip() == (
        f"error: credit version {LEGACY} is incomplete: its record names no BentoML model or bento (it was "
        "written before packaging was atomic), so it cannot be served; package a new version"
    )
    assert cli("history", "credit", "--json", home=home).stdout.strip() == "[]"


def test_history_prints_every_move_in_order(home):
    assert cli("promote", "credit", V1, home=home).returncode == 0
    assert cli("promote", "credit", V2, "--reason", "better", home=home).returncode == 0
    assert cli("promote", "credit", V3, "--alias", "challenger", home=home).returncode == 0
    assert cli("rollback", "credit", home=home).returncode == 0

    moves = json.loads(cli("history", "credit", "--json", home=home).stdout)
    assert [(m["alias"], m["sequence"], m["previous"], m["version"], m["rollback"]) for m in moves] == [
        ("champion", 1, None, V1, False),
        ("champion", 2, V1, V2, False),
        ("challenger", 1, None, V3, False),
        ("champion", 3, V2, V1, True),
    ]
    assert set(moves[0]) == {"sequence", "alias", "version", "previous", "time", "actor", "reason", "rollback"}
    assert moves[1]["reason"] == "better" and moves[3]["reason"] == f"rollback from {V2}"
    assert all(m["actor"].startswith("cli:") for m in moves)
    assert [m["time"] for m in moves] == sorted(m["time"] for m in moves)

    champion = json.loads(cli("history", "credit", "--alias", "champion", "--json", home=home).stdout)
    assert [m["sequence"] for m in champion] == [1, 2, 3]

    text = cli("history", "credit", home=home)
    assert text.returncode == 0
    lines = text.stdout.splitlines()
    assert len(lines) == 5 and lines[0].split()[:3] == ["seq", "time", "alias"]
    assert f"{V2:<24} -> {V1:<24}" in lines[-1] and lines[-1].endswith("(rollback)")


def test_history_of_a_pipeline_without_moves(home):
    done = cli("history", "otherpipe", home=home)
    assert (done.returncode, done.stdout.strip()) == (1, "otherpipe: no alias moves")
