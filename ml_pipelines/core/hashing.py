"""Content hashes for data versions."""

from __future__ import annotations

import hashlib

import pandas as pd


def frame_hash(frame: pd.DataFrame) -> str:
    """sha256 over column names, dtypes and row contents (the index is ignored)."""
    digest = hashlib.sha256()
    digest.update("|".join(f"{c}:{frame[c].dtype}" for c in frame.columns).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]
