"""Real datasets that ship inside scikit-learn, so the demos load them offline."""

from __future__ import annotations

import pandas as pd
from sklearn.datasets import load_diabetes, load_wine


def diabetes() -> pd.DataFrame:
    """442 diabetes patients; target: disease progression one year after baseline."""
    frame = load_diabetes(as_frame=True, scaled=False).frame
    frame = frame.rename(columns={"target": "progression", "s1": "tc", "s2": "ldl", "s3": "hdl",
                                  "s4": "tch", "s5": "ltg", "s6": "glu"})
    frame["sex"] = frame["sex"].map({1.0: "female", 2.0: "male"}).astype("str")
    return frame


def wine() -> pd.DataFrame:
    """178 wines from three cultivars; target: the cultivar's name (multiclass)."""
    data = load_wine(as_frame=True)
    frame = data.frame.rename(columns=lambda c: c.replace("/", "_per_"))
    frame["cultivar"] = pd.array([str(data.target_names[t]) for t in frame.pop("target")], dtype="str")
    return frame
