"""serving.runtime without a server: the model's input frame."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from ml_pipelines.core.records import ModelInputs
from ml_pipelines.serving.runtime import records_to_frame

FEATURES = ModelInputs(
    inputs=["income", "age", "purpose", "member", "note"],
    types={"income": "float", "age": "int", "purpose": "category", "member": "bool", "note": "str"},
)


def _reference_frame(rows: list[dict[str, Any]], features: ModelInputs) -> pd.DataFrame:
    """What the service built before: DataFrame.from_records, numeric inputs through to_numeric."""
    frame = pd.DataFrame.from_records(rows, columns=features.inputs)
    for column, kind in features.types.items():
        if column in frame.columns and kind in ("float", "int"):
            frame[column] = pd.to_numeric(frame[column], errors="raise").astype("float64")
    return frame


ROWS = [
    {"income": 52000.5, "age": 41, "purpose": "car", "member": True, "note": "a"},
    {"income": None, "age": 23, "purpose": "home", "member": None, "note": None},
    {"income": 0, "age": 99, "purpose": "unseen", "member": False, "note": "ü" * 3},
]


@pytest.mark.parametrize("rows", [ROWS[:1], ROWS[1:2], ROWS, [ROWS[1], ROWS[1]]],
                         ids=["one", "nulls", "three", "all-null"])
def test_the_input_frame_is_the_one_from_records_builds(rows):
    frame = records_to_frame(rows, FEATURES)
    pd.testing.assert_frame_equal(frame, _reference_frame(rows, FEATURES))
    assert frame["age"].dtype == np.float64 and frame["income"].dtype == np.float64
