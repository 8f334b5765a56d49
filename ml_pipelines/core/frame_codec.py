"""Bytes for a value passed between pipeline steps: every pandas DataFrame in it as Parquet.

A DataFrame anywhere inside the value (the value itself, a field of a dataclass such as
ValidatedData or FeatureSet, an item of a dict or list) is written as Parquet (zstd), and
the rest of the value is pickled around it with a reference to each frame (pickle's
persistent ids). Reading returns the same object, frames included, with the same dtypes,
index and columns. A frame Parquet cannot hold exactly (non-string or duplicate column
names, `attrs`, object columns of mixed types) stays in the pickle, as before.

Layout: MAGIC, a header (the pickle's length, then each frame's length), the pickle,
the frames. Bytes without MAGIC are a plain pickle, what Dagster's pickle IO managers
stored before: they still load.
"""

from __future__ import annotations

import io
import pickle
import struct
from collections.abc import Iterator
from typing import Any

import pandas as pd

MAGIC = b"MLPFRAMES1\n"
COMPRESSION = "zstd"
# rows converted to Arrow at a time when writing: the Arrow copy of a frame is one chunk's,
# not the whole frame's (at 10M rows, about 100 MB instead of a gigabyte)
CHUNK_ROWS = 1_000_000
_LENGTH = struct.Struct("<Q")


def dumps(value: Any) -> bytes:
    """value as bytes: its DataFrames as Parquet, the rest pickled."""
    frames: list[bytes] = []
    body = io.BytesIO()
    _FramePickler(body, frames).dump(value)
    pickled = body.getbuffer()
    out = io.BytesIO()
    out.write(MAGIC)
    out.write(_LENGTH.pack(len(frames)))
    for part in (pickled, *frames):
        out.write(_LENGTH.pack(len(part)))
    out.write(pickled)
    for frame in frames:
        out.write(frame)
    return out.getvalue()


def loads(data: bytes) -> Any:
    """The value `dumps` wrote (or a plain pickle, as older step outputs were stored)."""
    view = memoryview(data)
    if not data.startswith(MAGIC):
        return pickle.loads(data)
    at = len(MAGIC)
    (count,) = _LENGTH.unpack_from(view, at)
    lengths = [_LENGTH.unpack_from(view, at + _LENGTH.size * (1 + i))[0] for i in range(count + 1)]
    at += _LENGTH.size * (count + 2)
    parts = []
    for length in lengths:
        parts.append(view[at : at + length])
        at += length
    if at != len(data):
        raise ValueError(f"stored value is {len(data)} bytes, its header accounts for {at}")
    return _FrameUnpickler(parts[0], parts[1:]).load()


def parquet_bytes(frame: pd.DataFrame) -> bytes | None:
    """frame as Parquet, or None when Parquet would not give the same frame back."""
    import pyarrow as pa

    if frame.attrs or not all(isinstance(c, str) for c in frame.columns) or frame.columns.has_duplicates:
        return None
    if any(not isinstance(name, (str, type(None))) for name in frame.index.names):
        return None
    try:
        return write_parquet(frame)
    except (pa.ArrowException, TypeError, ValueError):
        return None  # e.g. an object column mixing types


def row_chunks(frame: pd.DataFrame, rows: int) -> Iterator[pd.DataFrame]:
    """frame's rows, `rows` at a time, as views; one empty chunk for an empty frame (its columns
    and dtypes still count)."""
    for start in range(0, max(len(frame), 1), rows):
        yield frame.iloc[start : start + rows]


def write_parquet(frame: pd.DataFrame) -> bytes:
    """frame as zstd Parquet, written CHUNK_ROWS rows at a time (a row group each) under the
    whole frame's schema; pyarrow's error when a column cannot be converted."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    # the whole frame's schema: its pandas metadata (index, dtypes) is what a read restores
    schema = pa.Schema.from_pandas(frame, preserve_index=None)
    with pq.ParquetWriter(sink, schema, compression=COMPRESSION) as writer:
        for chunk in row_chunks(frame, CHUNK_ROWS):
            writer.write_table(pa.Table.from_pandas(chunk, schema=schema, preserve_index=None))
    return sink.getvalue()


def read_parquet(data: bytes | memoryview) -> pd.DataFrame:
    """The frame parquet_bytes wrote. Arrow's buffers are freed column by column as pandas takes
    them (self_destruct), so reading peaks near one copy of the frame, not two."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pq.read_table(pa.BufferReader(data)).to_pandas(self_destruct=True, split_blocks=True)


class _FramePickler(pickle.Pickler):
    def __init__(self, file: io.BytesIO, frames: list[bytes]):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.frames = frames
        self.seen: dict[int, tuple[pd.DataFrame, Any]] = {}  # id -> (the frame, kept alive; its reference)

    def persistent_id(self, obj: Any) -> Any:
        if type(obj) is not pd.DataFrame:  # subclasses keep their own pickling
            return None
        if id(obj) in self.seen:  # one frame held twice is stored once, and loads as one object
            return self.seen[id(obj)][1]
        data = parquet_bytes(obj)
        reference = None
        if data is not None:
            self.frames.append(data)
            reference = ("parquet", len(self.frames) - 1)
        self.seen[id(obj)] = (obj, reference)
        return reference


class _FrameUnpickler(pickle.Unpickler):
    def __init__(self, pickled: memoryview, frames: list[memoryview]):
        super().__init__(io.BytesIO(pickled))
        self.frames = frames
        self.loaded: dict[int, pd.DataFrame] = {}

    def persistent_load(self, pid: Any) -> Any:
        kind, index = pid
        if kind != "parquet":
            raise pickle.UnpicklingError(f"unknown stored reference {kind!r}")
        if index not in self.loaded:
            self.loaded[index] = read_parquet(self.frames[index])
        return self.loaded[index]
