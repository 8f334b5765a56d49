"""core/frame_codec.py: step outputs with their DataFrames as Parquet read back exactly
(dtypes, index, content hash), typed outputs keep their frames, frames Parquet cannot
hold stay pickled, and bytes stored by the old pickle IO managers still load."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ml_pipelines.core import frame_codec
from ml_pipelines.core.features import build_feature_set
from ml_pipelines.core.hashing import frame_hash
from ml_pipelines.core.validation import keep_valid_rows, spec_schema
from ml_pipelines.datasets.credit import generate
from ml_pipelines.spec import PipelineSpec
from ml_pipelines_tests.specs import small_credit_attributes


def _frames_stored(data: bytes) -> int:
    """How many Parquet frames the stored bytes hold (the header's count)."""
    assert data.startswith(frame_codec.MAGIC)
    return int.from_bytes(data[len(frame_codec.MAGIC) : len(frame_codec.MAGIC) + 8], "little")


def test_a_credit_frame_reads_back_identical_and_much_smaller_than_its_pickle():
    frame = generate(rows=20_000, seed=3)
    data = frame_codec.dumps(frame)
    back = frame_codec.loads(data)
    assert _frames_stored(data) == 1
    pd.testing.assert_frame_equal(back, frame, check_exact=True)
    assert back.dtypes.to_dict() == frame.dtypes.to_dict() and isinstance(back.index, pd.RangeIndex)
    assert frame_hash(back) == frame_hash(frame)  # the data versions downstream stay the same
    assert len(data) < 0.4 * len(pickle.dumps(frame, protocol=5))


def test_index_categories_nullable_integers_and_time_zones_survive():
    frame = pd.DataFrame({
        "n": pd.array([1, None, 3], dtype="Int64"),
        "c": pd.Categorical(["a", "b", "a"], categories=["b", "a"], ordered=True),
        "t": pd.to_datetime(["2026-01-01", "2026-01-02", None]).tz_localize("UTC"),
        "s": ["x", None, "z"],
        "f": [0.5, np.nan, np.inf],
    }, index=pd.Index([10, 4, 7], name="row"))
    back = frame_codec.loads(frame_codec.dumps(frame))
    pd.testing.assert_frame_equal(back, frame, check_exact=True)


@pytest.mark.parametrize("index", [None, pd.Index([9, 1, 5, 3, 7, 0, 2, 8, 6, 4], name="row"),
                                   pd.RangeIndex(100, 120, 2)])
def test_a_frame_written_in_chunks_reads_back_exactly(monkeypatch, index):
    """Frames are written CHUNK_ROWS rows at a time under the whole frame's schema: a chunk whose
    text column is all null, or whose categories are not all used, still reads back the same."""
    monkeypatch.setattr(frame_codec, "CHUNK_ROWS", 3)
    frame = pd.DataFrame({
        "n": pd.array([1, None, 3, 4, 5, 6, 7, 8, 9, 10], dtype="Int64"),
        "c": pd.Categorical(list("aabbbbbbbc"), categories=["c", "b", "a"]),
        "s": [None, None, None, "x", "y", "z", "x", "y", "z", "w"],
        "f": np.linspace(0, 1, 10),
    }, index=index)
    data = frame_codec.parquet_bytes(frame)
    assert pq.ParquetFile(pa.BufferReader(data)).num_row_groups == 4
    pd.testing.assert_frame_equal(frame_codec.read_parquet(data), frame, check_exact=True)
    assert frame_hash(frame_codec.loads(frame_codec.dumps(frame))) == frame_hash(frame)


def test_typed_outputs_keep_their_frames_as_parquet():
    spec = PipelineSpec.model_validate(small_credit_attributes(rows=2000))
    raw = generate(rows=2000, seed=7)
    schema = spec_schema(spec, raw, None)
    validated, _ = keep_valid_rows(raw, schema, block=True, pipeline=spec.name)
    features = build_feature_set(spec, validated.frame).with_lineage(
        data_version=frame_hash(validated.frame), schema=schema, partitions=("2026-01-01",)
    )
    for value, frames in ((validated, 1), (features, 2), ({"a": validated, "b": features}, 3)):
        data = frame_codec.dumps(value)
        assert _frames_stored(data) == frames
        back = frame_codec.loads(data)
        assert type(back) is type(value)
    # one frame object held twice is stored once, and comes back as one object
    twice = frame_codec.loads(frame_codec.dumps({"a": validated, "b": validated.frame}))
    assert twice["a"].frame is twice["b"]
    back = frame_codec.loads(frame_codec.dumps(features))
    pd.testing.assert_frame_equal(back.train, features.train, check_exact=True)
    pd.testing.assert_frame_equal(back.test, features.test, check_exact=True)
    assert (back.columns, back.schema, back.data_version, back.partitions) == (
        features.columns, features.schema, features.data_version, features.partitions
    )
    assert back.xy("train")[0].columns.tolist() == features.xy("train")[0].columns.tolist()


@pytest.mark.parametrize("frame", [
    pd.DataFrame({"mixed": [1, "two", 3.0]}),  # Parquet has no column of mixed types
    pd.DataFrame({0: [1.0], 1: [2.0]}),  # column names that are not strings
    pd.DataFrame([[1, 2]], columns=["a", "a"]),  # duplicate names
])
def test_frames_parquet_cannot_hold_exactly_stay_pickled(frame):
    data = frame_codec.dumps(frame)
    assert _frames_stored(data) == 0
    pd.testing.assert_frame_equal(frame_codec.loads(data), frame)


def test_attrs_keep_the_frame_pickled():
    frame = pd.DataFrame({"a": [1.0]})
    frame.attrs["source"] = "x"
    back = frame_codec.loads(frame_codec.dumps(frame))
    assert back.attrs == {"source": "x"}


def test_bytes_the_pickle_io_managers_stored_still_load():
    frame = generate(rows=100, seed=1)
    pd.testing.assert_frame_equal(frame_codec.loads(pickle.dumps(frame)), frame)
    assert frame_codec.loads(pickle.dumps({"model": "x"})) == {"model": "x"}


def test_truncated_bytes_are_refused():
    data = frame_codec.dumps(generate(rows=100, seed=1))
    with pytest.raises(ValueError, match="header accounts for"):
        frame_codec.loads(data[:-10])
