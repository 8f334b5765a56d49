"""Content hashes for data versions."""

from __future__ import annotations

import hashlib

import pandas as pd

from ml_pipelines.core.frame_codec import row_chunks

# Rows hashed per call: each row's hash depends on that row alone, so the digest is the same in
# any chunking, and a chunk's temporaries stay in the CPU caches (10M rows: 0.66 s against 1.1 s whole).
HASH_ROWS = 250_000


def frame_hash(frame: pd.DataFrame) -> str:
    """sha256 over column names, dtypes and row contents (the index is ignored)."""
    digest = hashlib.sha256()
    digest.update("|".join(f"{c}:{frame[c].dtype}" for c in frame.columns).encode())
    for rows in row_chunks(frame, HASH_ROWS):  # an empty frame's one empty chunk adds no bytes
        digest.update(pd.util.hash_pandas_object(rows, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]
