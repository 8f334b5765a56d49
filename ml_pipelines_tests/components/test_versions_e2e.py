"""Issue 15 end to end: a pipeline on a CSV is materialized through Dagster (v1); the CSV and the
spec change and it is materialized again (v2). `ml-pipelines reproduce v1` rebuilds v1 from what
the registry kept, without reading the CSV (it is gone by then) or changing the registry, and
matches exactly; `ml-pipelines diff v1 v2` names the changed rows, the spec change and the metric
change; one flipped byte in v1's stored data makes reproduce refuse, naming the file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ml_pipelines.core.snapshots import DATA_FILE
from ml_pipelines.spec import PipelineSpec
from ml_pipelines_tests import REPO_ROOT
from ml_pipelines_tests.helpers import materialize
from ml_pipelines_tests.versions import changed_churn_frame, churn_attributes, churn_frame

pytestmark = pytest.mark.usefixtures("one_thread")


def cli(*args: str, root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "ML_PIPELINES_HOME": str(root), "ML_PIPELINES_ENV": "local"}
    return subprocess.run([sys.executable, "-m", "ml_pipelines.cli", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def test_reproduce_and_diff_versions_dagster_made(tmp_path):
    root, csv = tmp_path / "platform", tmp_path / "data" / "churn.csv"
    csv.parent.mkdir()
    churn_frame().to_csv(csv, index=False)
    first = materialize(PipelineSpec.model_validate(churn_attributes(csv)), root)
    assert first.success, first.step_errors()
    (v1,) = first.registry.list_versions("churn")

    changed_churn_frame().to_csv(csv, index=False)
    attributes = churn_attributes(csv)
    attributes["models"][0]["params"]["C"] = 0.05
    second = materialize(PipelineSpec.model_validate(attributes), root)
    assert second.success, second.step_errors()
    v2 = second.registry.list_versions("churn")[-1]
    assert v2.version != v1.version and v2.data_version != v1.data_version
    assert v1.snapshot is not None and v1.snapshot.data_rows == 400 and v2.snapshot.data_rows == 399

    csv.unlink()  # no source is read
    registry = first.registry
    objects = {k: registry.store.get(k) for k in registry.store.list("")}
    champion = registry.get_alias("churn", "champion")
    done = cli("reproduce", "churn", v1.version, root=root)
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "result: the rebuild matches (exact)" in done.stdout
    assert {k: registry.store.get(k) for k in registry.store.list("")} == objects  # the registry is unchanged
    assert registry.get_alias("churn", "champion") == champion

    diff = cli("diff", "churn", v1.version, v2.version, root=root)
    assert diff.returncode == 0, diff.stderr
    assert "1 added, 2 removed" in diff.stdout
    assert "+ row 3: customer_id=C0003, tenure_months=62, contract=two-year, monthly_charges=100.0000" in diff.stdout
    assert "- row 10: customer_id=C0010" in diff.stdout
    assert "+    C: 0.05" in diff.stdout
    as_json = json.loads(cli("diff", "churn", v1.version, v2.version, "--format", "json", root=root).stdout)
    roc = as_json["metrics"]["roc_auc"]
    assert (roc["old"], roc["new"]) == (v1.metrics["roc_auc"], v2.metrics["roc_auc"]) and roc["delta"] != 0

    key = v1.snapshot.files[DATA_FILE].key
    payload = bytearray(registry.store.get(key))
    payload[100] ^= 0xFF
    registry.store.put(key, bytes(payload))
    refused = cli("reproduce", "churn", v1.version, root=root)
    assert refused.returncode == 2
    assert refused.stderr.startswith(f"error: {registry.store.uri(key)}: checksum mismatch")
    assert "Traceback" not in refused.stderr
