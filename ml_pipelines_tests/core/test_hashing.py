"""core.hashing: the data hash is the same however many rows are hashed per call, so hashing
in chunks (to stay in the CPU caches) left every stored data version's hash as it was."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from ml_pipelines.core import hashing


def whole_frame_hash(frame: pd.DataFrame) -> str:
    """The hash as it was computed before chunking: every row in one call."""
    digest = hashlib.sha256()
    digest.update("|".join(f"{c}:{frame[c].dtype}" for c in frame.columns).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def mixed_frame(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    income = rng.normal(50_000, 10_000, rows)
    income[::7] = np.nan
    return pd.DataFrame({
        "income": income,
        "age": rng.integers(18, 90, rows),
        "purpose": rng.choice(["car", "home", "education"], rows),
        "grade": pd.Categorical(rng.choice(["a", "b", "c"], rows)),
        "applied": pd.date_range("2026-01-01", periods=rows, freq="h"),
        "flag": rng.random(rows) > 0.5,
    }, index=rng.permutation(rows))


@pytest.mark.parametrize("rows", [0, 1, 999, 1000, 2501])
def test_the_hash_in_chunks_is_the_hash_of_the_whole_frame(monkeypatch, rows):
    monkeypatch.setattr(hashing, "HASH_ROWS", 1000)
    frame = mixed_frame(rows)
    assert hashing.frame_hash(frame) == whole_frame_hash(frame)


def test_the_hash_still_sees_every_chunk(monkeypatch):
    monkeypatch.setattr(hashing, "HASH_ROWS", 1000)
    frame = mixed_frame(2501)
    changed = frame.copy()
    changed.iloc[2500, 1] += 1  # a value in the last, partial chunk
    assert hashing.frame_hash(changed) != hashing.frame_hash(frame)
