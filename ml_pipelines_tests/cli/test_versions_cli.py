"""`ml-pipelines reproduce`, `diff` and `registry gc` as users start them (`python -m ml_pipelines.cli`),
against a local registry whose versions were made by the core calls the assets make
(ml_pipelines_tests/versions.py): exit statuses, one `error:` line for what cannot be rebuilt,
--format json, and gc's bytes. components/test_versions_e2e.py runs them on versions Dagster made."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ml_pipelines.core.registry import ModelRegistry
from ml_pipelines.core.storage import LocalObjectStore
from ml_pipelines.spec import PipelineSpec
from ml_pipelines_tests import REPO_ROOT
from ml_pipelines_tests.versions import CHURN_CSV, churn_attributes, churn_frame, train_version

pytestmark = pytest.mark.usefixtures("one_thread")

V1, V2, V3 = "20260101-000000-000001", "20260101-000000-000002", "20260101-000000-000003"


def cli(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "ML_PIPELINES_HOME": str(home), "ML_PIPELINES_ENV": "local"}
    return subprocess.run([sys.executable, "-m", "ml_pipelines.cli", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def home(tmp_path_factory, one_thread) -> Path:
    """ML_PIPELINES_HOME with `churn` V1 (champion), V2 (on the same data) and V3 (the first 300 rows)."""
    home = tmp_path_factory.mktemp("home")
    registry = ModelRegistry(LocalObjectStore(home / "registry"))
    spec = PipelineSpec.model_validate(churn_attributes(CHURN_CSV))
    train_version(registry, spec, churn_frame(), V1)
    train_version(registry, PipelineSpec.model_validate(churn_attributes(CHURN_CSV, description="v2")),
                  churn_frame(), V2)
    train_version(registry, spec, churn_frame().iloc[:300], V3)
    registry.set_alias("churn", "champion", V1, actor="test", reason="first")
    return home


def test_reproduce_prints_each_check_and_exits_0_when_it_matches(home):
    done = cli("reproduce", "churn", V1, home=home)
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert done.stdout.rstrip().endswith("result: the rebuild matches (exact)")
    for line in ("ok   metric roc_auc", "ok   predictions", "ok   data", "ok   spec", "environment, then -> now:"):
        assert line in done.stdout
    as_json = json.loads(cli("reproduce", "churn", V1, "--format", "json", home=home).stdout)
    assert as_json["matches"] is True and as_json["tolerance"] == 0


def test_diff_as_text_and_json(home):
    text = cli("diff", "churn", V1, V3, home=home)
    assert text.returncode == 0, text.stderr
    assert "rows: 400 -> 300: 0 added, 100 removed" in text.stdout
    as_json = json.loads(cli("diff", "churn", V1, V2, "--format", "json", home=home).stdout)
    assert as_json["rows"]["added"] == as_json["rows"]["removed"] == 0
    assert "+description: v2" in as_json["spec"]


def test_what_cannot_be_rebuilt_is_one_error_line_and_exit_2(home):
    for args, message in [
        (("reproduce", "churn", "20261231-000000-000000"), "churn has no version '20261231-000000-000000'"),
        (("reproduce", "../churn", V1), "pipeline name '../churn' is not valid"),
        (("diff", "churn", V1, "nope"), "version id 'nope' is not valid"),
    ]:
        done = cli(*args, home=home)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert done.stderr.startswith(f"error: {message}") and len(done.stderr.splitlines()) == 1
        assert "Traceback" not in done.stderr


def test_gc_frees_bytes_keeps_records_and_a_collected_version_says_so(home, tmp_path):
    dry = cli("registry", "gc", "churn", "--keep", "1", "--grace-hours", "0", "--dry-run", home=home)
    assert dry.returncode == 0, dry.stderr
    assert f"keep    {V1}" in dry.stdout and f"keep    {V3}" in dry.stdout and f"remove  {V2}" in dry.stdout
    assert "dry run: nothing removed" in dry.stdout
    before = cli("registry", "gc", "churn", "--keep", "1", "--grace-hours", "0", "--dry-run", "--format", "json",
                 home=home)
    planned = json.loads(before.stdout)
    assert planned["data_removed"] == []  # V2's data is V1's, and V1 is the champion

    done = cli("registry", "gc", "churn", "--keep", "1", "--grace-hours", "0", "--format", "json", home=home)
    result = json.loads(done.stdout)
    assert result["bytes"] == planned["bytes"] > 0 and result["collected"] == {V2: planned["collected"][V2]}
    listed = cli("registry", "list", "churn", home=home)
    assert all(version in listed.stdout for version in (V1, V2, V3))  # every record stays

    again = cli("reproduce", "churn", V2, home=home)
    assert again.returncode == 2
    assert again.stderr.startswith(f"error: churn version {V2}: its artifacts and snapshot were removed by "
                                   "`registry gc`")
    assert "Traceback" not in again.stderr
    assert cli("reproduce", "churn", V1, home=home).returncode == 0  # the shared data is still there
