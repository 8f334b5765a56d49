"""definitions.py: the YAML of every spec file is checked before Dagster parses any of
them, through the same ComponentTree that dg.load_from_defs_folder builds. An alias bomb
is refused within seconds (the load runs in a subprocess with a timeout: before, it never
ended), and a duplicate key names the file, line and key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from dagster.components.testing import create_defs_folder_sandbox

from ml_pipelines.definitions import build_checked_defs
from ml_pipelines.resources import local_resources
from ml_pipelines_tests import REPO_ROOT
from ml_pipelines_tests.core.test_spec_files import alias_bomb

COMPONENT_TYPE = "ml_pipelines.components.MLPipeline"
LOAD_TIMEOUT_S = 120  # the subprocess, with its imports; the bomb used to hang well past this
CHECK_SECONDS = 5.0  # the load itself, from the tree to the refusal


def good_spec(name: str) -> str:
    attributes = {
        "name": name,
        "task": "classification",
        "target": "defaulted",
        "source": {"kind": "csv", "path": "data/loans.csv"},
        "models": [{"name": "logreg", "estimator": "sklearn.linear_model.LogisticRegression"}],
    }
    return yaml.safe_dump({"type": COMPONENT_TYPE, "attributes": attributes}, sort_keys=False)


DUPLICATE_KEY_SPEC = """\
type: ml_pipelines.components.MLPipeline
attributes:
  name: dup
  task: classification
  target: defaulted
  source: {kind: csv, path: data/loans.csv}
  models:
    - {name: logreg, estimator: sklearn.linear_model.LogisticRegression}
  target: other
"""

LOADER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    import dagster as dg
    from dagster.components.testing import create_defs_folder_sandbox
    from ml_pipelines.definitions import build_checked_defs

    files = json.loads(sys.argv[1])
    with create_defs_folder_sandbox() as sandbox:
        for relative, text in files.items():
            path = sandbox.defs_folder_path / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        sys.path.insert(0, str(sandbox.project_root / "src"))
        start = time.perf_counter()
        try:
            # what the @dg.definitions entry point does for the project's own defs folder
            tree = dg.ComponentTree.for_project(path_within_project=sandbox.defs_folder_path)
            build_checked_defs(tree)
            error, kind = None, None
        except Exception as exc:
            parts, current = [], exc
            while current is not None:
                parts.append(str(current))
                current = current.__cause__
            error, kind = "\\n".join(parts), type(exc).__name__
        print(json.dumps({"seconds": time.perf_counter() - start, "error": error, "kind": kind,
                          "defs_folder": str(sandbox.defs_folder_path)}))
    """
)


def load_in_subprocess(files: dict[str, str]) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    try:
        done = subprocess.run(
            [sys.executable, "-c", LOADER, json.dumps(files)],
            capture_output=True, text=True, timeout=LOAD_TIMEOUT_S, env=env, cwd=REPO_ROOT, check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"loading the definitions did not finish within {LOAD_TIMEOUT_S} s")
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_alias_bomb_is_refused_within_seconds_naming_the_file():
    result = load_in_subprocess({"good/defs.yaml": good_spec("good"), "bomb/defs.yaml": alias_bomb()})
    assert result["kind"] == "DagsterInvalidDefinitionError", result
    assert result["seconds"] < CHECK_SECONDS, result
    bomb = f"{result['defs_folder']}/bomb/defs.yaml"
    assert f"{bomb}: its YAML aliases expand to 1,234,567,927 nodes" in result["error"]
    assert "refused spec files, not loaded" in result["error"]
    assert "good/defs.yaml" not in result["error"]


def test_duplicate_key_is_refused_naming_file_line_and_key():
    result = load_in_subprocess({"good/defs.yaml": good_spec("good"), "dup/defs.yaml": DUPLICATE_KEY_SPEC})
    dup = f"{result['defs_folder']}/dup/defs.yaml"
    assert f"{dup}:9: duplicate key 'target' (first at line 5)" in result["error"], result


def test_good_specs_load_with_policies_applied():
    with create_defs_folder_sandbox() as sandbox:
        for name in ("loans", "churn"):
            folder = sandbox.defs_folder_path / name
            folder.mkdir()
            (folder / "defs.yaml").write_text(good_spec(name))
        with sandbox.build_component_tree() as tree:
            defs = dg.Definitions.merge(
                build_checked_defs(tree), dg.Definitions(resources=local_resources(sandbox.project_root))
            )
            graph = defs.resolve_asset_graph()
            keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
            owners = graph.get(dg.AssetKey(["loans", "raw_data"])).owners
    assert {"loans/raw_data", "churn/model_package"} <= keys
    assert owners == ["team:ml-platform"]


def test_the_shipped_entry_point_checks_the_defs_folder(monkeypatch):
    """definitions.defs hands its own defs folder to the checks."""
    from ml_pipelines import definitions

    checked: list[list[Path]] = []
    monkeypatch.setattr(definitions, "check_spec_files", lambda paths: checked.append(list(paths)))
    monkeypatch.setattr(dg.ComponentTree, "build_defs", lambda self: dg.Definitions())
    definitions.defs()
    assert checked and {p.parent.name for p in checked[0]} >= {"credit_default", "wine_cultivar"}
