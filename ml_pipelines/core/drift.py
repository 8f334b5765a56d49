"""Drift statistics against a stored reference profile.

We compute these ourselves, vectorized in numpy, because Evidently (the usual
library) does not import under pandas 3, and because working from a compact
profile means the training data is never re-read. Each statistic follows the
definition scipy uses, so the unit tests compare against scipy.stats directly:

- numeric: Kolmogorov-Smirnov (scipy.stats.ks_2samp, asymptotic p-value),
  Wasserstein-1 normed by the reference std (scipy.stats.wasserstein_distance),
  PSI over reference-quantile bins, Jensen-Shannon over the same bins;
- categorical: chi-square of current counts against reference proportions
  (scipy.stats.chisquare), a two-proportion z-test for binary columns,
  Jensen-Shannon (scipy.spatial.distance.jensenshannon), PSI.

`method: auto` picks like Evidently's DataDriftPreset: with <= 1000 reference
rows, KS for numeric and chi-square (z-test when binary) for categorical, judged
by p-value < 0.05 after a Benjamini-Hochberg correction; above that, normed
Wasserstein for numeric and Jensen-Shannon for categorical, threshold 0.1.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

QUANTILES = 20_000  # order statistics kept per numeric column
PSI_BINS = 10
EPSILON = 1e-4
SMALL_SAMPLE = 1000
P_VALUE_METHODS = ("ks", "chi2", "ztest")
DEFAULT_THRESHOLDS = {
    "ks": 0.05, "chi2": 0.05, "ztest": 0.05, "wasserstein": 0.1, "jensenshannon": 0.1, "psi": 0.1,
}

# ---------------------------------------------------------------- reference profile


@dataclass
class NumericProfile:
    rows: int  # non-null reference values
    quantiles: np.ndarray  # sorted order statistics (all values when rows <= QUANTILES)
    std: float
    psi_edges: np.ndarray
    null_share: float


@dataclass
class CategoricalProfile:
    rows: int
    counts: dict[str, int]
    null_share: float


@dataclass
class ReferenceProfile:
    numeric: dict[str, NumericProfile] = field(default_factory=dict)
    categorical: dict[str, CategoricalProfile] = field(default_factory=dict)
    prediction: NumericProfile | CategoricalProfile | None = None

    def columns(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    # stored as one .npz (arrays) with a JSON header: no pickle anywhere
    def to_bytes(self) -> bytes:
        arrays: dict[str, np.ndarray] = {}
        header: dict[str, Any] = {"numeric": {}, "categorical": {}, "prediction": None}
        for name, profile in self.numeric.items():
            header["numeric"][name] = _numeric_header(profile, f"n{len(arrays)}", arrays)
        for name, profile in self.categorical.items():
            header["categorical"][name] = asdict(profile)
        if isinstance(self.prediction, NumericProfile):
            header["prediction"] = {"kind": "numeric", **_numeric_header(self.prediction, "pred", arrays)}
        elif isinstance(self.prediction, CategoricalProfile):
            header["prediction"] = {"kind": "categorical", **asdict(self.prediction)}
        arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> ReferenceProfile:
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            header = json.loads(arrays["header"].tobytes())
            numeric = {n: _numeric_from(h, arrays) for n, h in header["numeric"].items()}
            categorical = {n: CategoricalProfile(**h) for n, h in header["categorical"].items()}
            prediction = header["prediction"]
            if prediction is not None:
                kind = prediction.pop("kind")
                prediction = _numeric_from(prediction, arrays) if kind == "numeric" else CategoricalProfile(**prediction)
        return cls(numeric, categorical, prediction)


def _numeric_header(profile: NumericProfile, prefix: str, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    arrays[f"{prefix}_q"] = profile.quantiles
    arrays[f"{prefix}_e"] = profile.psi_edges
    return {"rows": profile.rows, "std": profile.std, "null_share": profile.null_share, "prefix": prefix}


def _numeric_from(header: dict[str, Any], arrays) -> NumericProfile:
    prefix = header["prefix"]
    return NumericProfile(header["rows"], arrays[f"{prefix}_q"], header["std"], arrays[f"{prefix}_e"], header["null_share"])


def numeric_profile(values: pd.Series | np.ndarray, max_quantiles: int = QUANTILES) -> NumericProfile:
    raw = np.asarray(values, dtype=np.float64)
    finite = np.sort(raw[~np.isnan(raw)])
    n = len(finite)
    if n > max_quantiles:
        # evenly spaced order statistics: an ECDF within 1/max_quantiles of the data's
        quantiles = finite[((np.arange(max_quantiles) + 0.5) * n / max_quantiles).astype(np.int64)]
    else:
        quantiles = finite
    edges = np.unique(np.quantile(finite, np.linspace(0, 1, PSI_BINS + 1)[1:-1])) if n else np.array([])
    return NumericProfile(n, quantiles, float(finite.std()) if n else 0.0, edges, float(1 - n / max(len(raw), 1)))


def categorical_profile(values: pd.Series) -> CategoricalProfile:
    series = pd.Series(values)
    counts = series.dropna().astype("str").value_counts()
    return CategoricalProfile(int(counts.sum()), {str(k): int(v) for k, v in counts.items()}, float(series.isna().mean()))


def build_profile(
    frame: pd.DataFrame, numeric: list[str], categorical: list[str], predictions: np.ndarray | None = None,
    predictions_categorical: bool = False,
) -> ReferenceProfile:
    profile = ReferenceProfile(
        {c: numeric_profile(frame[c]) for c in numeric}, {c: categorical_profile(frame[c]) for c in categorical}
    )
    if predictions is not None:
        profile.prediction = (
            categorical_profile(pd.Series(predictions)) if predictions_categorical else numeric_profile(predictions)
        )
    return profile


# ---------------------------------------------------------------- statistics


def ks_statistic(reference_sorted: np.ndarray, current_sorted: np.ndarray) -> float:
    """The same statistic in O(m log n): between consecutive reference points the
    reference ECDF is flat and the current one monotone, so the sup is at a
    reference point (right limit) or just before one (left limit)."""
    m, n = len(reference_sorted), len(current_sorted)
    if m == 0 or n == 0:
        return float("nan")
    ref_right = np.searchsorted(reference_sorted, reference_sorted, side="right") / m
    ref_left = np.searchsorted(reference_sorted, reference_sorted, side="left") / m
    cur_right = np.searchsorted(current_sorted, reference_sorted, side="right") / n
    cur_left = np.searchsorted(current_sorted, reference_sorted, side="left") / n
    inside = max(np.max(np.abs(ref_right - cur_right)), np.max(np.abs(ref_left - cur_left)))
    # current mass below the first / above the last reference point
    tails = max(cur_left[0], 1 - cur_right[-1])
    return float(max(inside, tails))


def ks_p_value(statistic: float, m: int, n: int) -> float:
    """scipy's asymptotic two-sample p-value (ks_2samp(method='asymp'))."""
    en = m * n / (m + n)
    return float(np.clip(stats.kstwo.sf(statistic, np.round(en)), 0, 1))


def wasserstein(reference_sorted: np.ndarray, current_sorted: np.ndarray) -> float:
    """Exact W1 = integral over u of |Q_ref(u) - Q_cur(u)|, on the merged grid of
    quantile breakpoints i/m and j/n (in integer units of 1/(m*n))."""
    m, n = len(reference_sorted), len(current_sorted)
    if m == 0 or n == 0:
        return float("nan")
    grid = np.sort(np.concatenate([np.arange(m, dtype=np.int64) * n, np.arange(n, dtype=np.int64) * m]))
    widths = np.diff(np.append(grid, m * n)) / (m * n)
    return float(np.sum(widths * np.abs(reference_sorted[grid // n] - current_sorted[grid // m])))


def _proportions(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total else counts.astype(float)


def psi(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    ref = np.clip(_proportions(reference_counts), EPSILON, None)
    cur = np.clip(_proportions(current_counts), EPSILON, None)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def jensen_shannon(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    from scipy.spatial.distance import jensenshannon

    return float(jensenshannon(_proportions(reference_counts), _proportions(current_counts)))


def chi_square(reference_counts: np.ndarray, current_counts: np.ndarray) -> tuple[float, float]:
    """Current counts against reference proportions (scipy.stats.chisquare); a
    category the reference never saw gets EPSILON of expected mass."""
    expected = np.where(reference_counts > 0, reference_counts, EPSILON * reference_counts.sum())
    expected = expected / expected.sum() * current_counts.sum()
    result = stats.chisquare(current_counts, expected)
    return float(result.statistic), float(result.pvalue)


def z_test(reference_counts: np.ndarray, current_counts: np.ndarray) -> tuple[float, float]:
    """Two-proportion z-test on the first category's share (binary columns)."""
    n1, n2 = reference_counts.sum(), current_counts.sum()
    p1, p2 = reference_counts[0] / n1, current_counts[0] / n2
    pooled = (reference_counts[0] + current_counts[0]) / (n1 + n2)
    se = np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 0.0, 1.0
    z = (p2 - p1) / se
    return float(z), float(2 * stats.norm.sf(abs(z)))


# ---------------------------------------------------------------- report


@dataclass
class FeatureDrift:
    column: str
    kind: str  # numeric | categorical
    method: str
    value: float | None  # the statistic (p-value for p-value methods)
    threshold: float
    drifted: bool
    statistics: dict[str, float] = field(default_factory=dict)
    rows: int = 0
    null_share_reference: float = 0.0
    null_share_current: float = 0.0
    new_categories: list[str] = field(default_factory=list)
    note: str = ""


@dataclass
class DriftReport:
    features: list[FeatureDrift]
    share_drifted: float
    share_threshold: float
    dataset_drifted: bool
    rows: int
    missing_columns: list[str]
    prediction: FeatureDrift | None = None

    def drifted_columns(self) -> list[str]:
        return [f.column for f in self.features if f.drifted]

    def table_rows(self) -> list[list[Any]]:
        rows = []
        for f in sorted(self.features, key=lambda f: (not f.drifted, f.column)):
            rows.append([
                f.column, f.kind, f.method, f.value, f.threshold, "DRIFT" if f.drifted else "ok",
                f.statistics.get("psi"), f.statistics.get("ks"), f.statistics.get("wasserstein_normed"),
                f.statistics.get("jensenshannon"), f.null_share_current, ", ".join(f.new_categories[:5]) + f.note,
            ])
        return rows


def _choose_method(method: str, kind: str, reference_rows: int, binary: bool) -> str:
    if method != "auto":
        if kind == "categorical" and method in ("ks", "wasserstein"):
            return "chi2" if reference_rows <= SMALL_SAMPLE else "jensenshannon"
        if kind == "numeric" and method in ("chi2", "ztest"):
            return "ks"
        return method
    if kind == "numeric":
        return "ks" if reference_rows <= SMALL_SAMPLE else "wasserstein"
    if reference_rows <= SMALL_SAMPLE:
        return "ztest" if binary else "chi2"
    return "jensenshannon"


def numeric_drift(
    column: str, profile: NumericProfile, values: np.ndarray, method: str, threshold: float | None,
    statistics: tuple[str, ...] | None = None,
) -> FeatureDrift:
    raw = np.asarray(values, dtype=np.float64)
    current = np.sort(raw[~np.isnan(raw)])
    chosen = _choose_method(method, "numeric", profile.rows, False)
    wanted = set(statistics) if statistics is not None else {"ks", "wasserstein", "psi", "jensenshannon"}
    wanted.add("ks" if chosen == "ks" else chosen)
    result = FeatureDrift(column, "numeric", chosen, None, threshold or DEFAULT_THRESHOLDS[chosen], False,
                          rows=len(raw), null_share_reference=profile.null_share,
                          null_share_current=float(1 - len(current) / max(len(raw), 1)))
    if len(current) == 0:
        result.note = "all values are null"
        result.drifted = profile.rows > 0
        return result
    if profile.rows == 0:
        result.note = "all values were null in the reference"
        result.drifted = True
        return result
    s = result.statistics
    if "ks" in wanted:
        s["ks"] = ks_statistic(profile.quantiles, current)
        if chosen == "ks":  # scipy's kstwo.sf costs seconds at large n; only pay when KS decides
            s["ks_p_value"] = ks_p_value(s["ks"], profile.rows, len(current))
    if "wasserstein" in wanted:
        distance = wasserstein(profile.quantiles, current)
        s["wasserstein"] = distance
        s["wasserstein_normed"] = distance / profile.std if profile.std > 0 else float(distance > 0) * np.inf
    if wanted & {"psi", "jensenshannon"}:
        bins_ref = np.bincount(np.searchsorted(profile.psi_edges, profile.quantiles, side="right"),
                               minlength=len(profile.psi_edges) + 1)
        bins_cur = np.bincount(np.searchsorted(profile.psi_edges, current, side="right"),
                               minlength=len(profile.psi_edges) + 1)
        s["psi"] = psi(bins_ref, bins_cur)
        s["jensenshannon"] = jensen_shannon(bins_ref, bins_cur)
    result.value = {"ks": s.get("ks_p_value"), "wasserstein": s.get("wasserstein_normed")}.get(chosen, s.get(chosen))
    return result


def categorical_drift(
    column: str, profile: CategoricalProfile, values: pd.Series, method: str, threshold: float | None
) -> FeatureDrift:
    series = pd.Series(values)
    counts = series.dropna().astype("str").value_counts()
    categories = list(profile.counts) + [c for c in counts.index if c not in profile.counts]
    ref = np.array([profile.counts.get(c, 0) for c in categories], dtype=np.float64)
    cur = np.array([counts.get(c, 0) for c in categories], dtype=np.float64)
    chosen = _choose_method(method, "categorical", profile.rows, len(categories) == 2)
    result = FeatureDrift(column, "categorical", chosen, None, threshold or DEFAULT_THRESHOLDS[chosen], False,
                          rows=len(series), null_share_reference=profile.null_share,
                          null_share_current=float(series.isna().mean()) if len(series) else 0.0,
                          new_categories=[c for c in counts.index if c not in profile.counts])
    if cur.sum() == 0:
        result.note = "all values are null"
        result.drifted = profile.rows > 0
        return result
    if ref.sum() == 0:
        result.note = "all values were null in the reference"
        result.drifted = True
        return result
    s = result.statistics
    s["psi"] = psi(ref, cur)
    s["jensenshannon"] = jensen_shannon(ref, cur)
    s["chi2"], s["chi2_p_value"] = chi_square(ref, cur)
    if len(categories) == 2:
        s["ztest"], s["ztest_p_value"] = z_test(ref, cur)
    result.value = s.get(f"{chosen}_p_value", s.get(chosen))
    return result


def compute_drift(
    profile: ReferenceProfile,
    current: pd.DataFrame,
    *,
    method: str = "auto",
    threshold: float | None = None,
    share: float = 0.5,
    predictions: np.ndarray | None = None,
    numeric_statistics: tuple[str, ...] | None = None,
) -> DriftReport:
    features: list[FeatureDrift] = []
    missing = [c for c in profile.columns() if c not in current.columns]
    for column, numeric in profile.numeric.items():
        if column in current.columns:
            features.append(numeric_drift(column, numeric, current[column].to_numpy(dtype=np.float64, na_value=np.nan),
                                          method, threshold, numeric_statistics))
    for column, categorical in profile.categorical.items():
        if column in current.columns:
            features.append(categorical_drift(column, categorical, current[column], method, threshold))
    _decide(features)
    prediction = None
    if predictions is not None and profile.prediction is not None:
        if isinstance(profile.prediction, NumericProfile):
            prediction = numeric_drift("prediction", profile.prediction, np.asarray(predictions, float), method, threshold)
        else:
            prediction = categorical_drift("prediction", profile.prediction, pd.Series(predictions), method, threshold)
        _decide([prediction])
    judged = len(features) + len(missing)
    drifted = sum(f.drifted for f in features) + len(missing)  # a missing column counts as drifted
    share_drifted = drifted / judged if judged else 0.0
    return DriftReport(features, share_drifted, share, share_drifted >= share, len(current), missing, prediction)


def _decide(features: list[FeatureDrift]) -> None:
    """Verdicts; p-value tests are corrected together with Benjamini-Hochberg."""
    tested = [f for f in features if f.method in P_VALUE_METHODS and f.value is not None]
    if tested:
        adjusted = stats.false_discovery_control([f.value for f in tested], method="bh")
        for feature, p_adjusted in zip(tested, adjusted):
            feature.statistics["p_value_bh"] = float(p_adjusted)
            feature.value = float(p_adjusted)
            feature.drifted = p_adjusted < feature.threshold
    for feature in features:
        if feature.method not in P_VALUE_METHODS and feature.value is not None:
            feature.drifted = feature.value >= feature.threshold
