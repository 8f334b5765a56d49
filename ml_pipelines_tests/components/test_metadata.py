"""components/metadata.py: building a step's metadata keeps no reference to its data.

Dagster's @record classes (TableSchema, TableColumn, ...) compile their constructor on first
use and keep the first caller's local variables; the module builds them once at import so
that the first caller is never a step holding a DataFrame. Checked in a fresh interpreter,
where nothing else has built those classes yet."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import gc, weakref
import dagster as dg
from ml_pipelines.components import metadata as md
from ml_pipelines.core.features import build_feature_set
from ml_pipelines.datasets.credit import generate
from ml_pipelines.spec import PipelineSpec
from ml_pipelines_tests.specs import small_credit_attributes

frame = generate(rows=2_000, seed=1)
features = build_feature_set(PipelineSpec.model_validate(small_credit_attributes()), frame)
refs = {"frame": weakref.ref(frame), "train": weakref.ref(features.train), "test": weakref.ref(features.test)}
md.table_schema(frame)
md.features_metadata(features, dg.AssetKey(["leak", "raw_data"]))
del frame, features
gc.collect()
print(sorted(name for name, ref in refs.items() if ref() is not None))
"""


def test_table_and_feature_metadata_keep_no_frame_alive():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout
