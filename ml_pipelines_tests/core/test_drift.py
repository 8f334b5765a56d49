"""core/drift.py: each statistic against scipy on the same data, the method choice,
the Benjamini-Hochberg correction, the dataset verdict, and the awkward batches
(missing columns, all-null columns, new categories) that must be reported, never crash."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from ml_pipelines.core import drift
from ml_pipelines.core.drift import (
    QUANTILES,
    SMALL_SAMPLE,
    CategoricalProfile,
    NumericProfile,
    ReferenceProfile,
    build_profile,
    categorical_drift,
    categorical_profile,
    compute_drift,
    numeric_drift,
    numeric_profile,
)

# ---------------------------------------------------------------- data


def _normal(seed: int, size: int, loc: float = 0.0, scale: float = 1.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(loc, scale, size)


def _integers(seed: int, size: int, low: int, high: int) -> np.ndarray:
    """Heavy ties: a handful of distinct values."""
    return np.random.default_rng(seed).integers(low, high, size).astype(np.float64)


NUMERIC_CASES = {
    # name: (reference, current)
    "continuous, unequal sizes": (_normal(1, 700), _normal(2, 333, 0.2, 1.3)),
    "continuous, current larger": (_normal(3, 250), _normal(4, 900, -0.1)),
    "ties, unequal sizes": (_integers(5, 800, 0, 12), _integers(6, 217, 1, 14)),
    "ties, identical support": (_integers(7, 400, 0, 4), _integers(8, 999, 0, 4)),
    "current outside reference range": (_normal(9, 500), _normal(10, 120, 5.0)),
    "identical samples": (_normal(11, 300), _normal(11, 300)),
    "tiny current": (_normal(12, 600), np.array([0.3, -1.0, 0.3])),
}


def _numeric(case: str, method: str = "ks") -> tuple[np.ndarray, np.ndarray, drift.FeatureDrift]:
    reference, current = NUMERIC_CASES[case]
    profile = numeric_profile(reference)
    return reference, current, numeric_drift("x", profile, current, method, None)


# ---------------------------------------------------------------- Kolmogorov-Smirnov


@pytest.mark.parametrize("case", sorted(NUMERIC_CASES))
def test_ks_statistic_and_asymptotic_p_value_match_scipy(case):
    reference, current, result = _numeric(case)
    expected = stats.ks_2samp(reference, current, method="asymp")
    assert result.statistics["ks"] == pytest.approx(expected.statistic, abs=1e-12)
    assert result.statistics["ks_p_value"] == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-15)


def test_ks_p_value_function_is_scipys_asymptotic_formula():
    for m, n, statistic in [(700, 333, 0.12), (10_000, 50, 0.2), (5, 5, 0.6), (1_000_000, 2_000, 0.03)]:
        en = np.round(m * n / (m + n))  # scipy's ks_2samp(method="asymp"): kstwo at the effective size
        assert drift.ks_p_value(statistic, m, n) == pytest.approx(stats.kstwo.sf(statistic, en), rel=1e-12)


def test_ks_on_a_profile_with_more_rows_than_quantiles_is_within_one_over_quantiles_of_scipy():
    reference = np.concatenate([_normal(20, 60_000), _integers(21, 20_000, -2, 3)])  # continuous + ties
    current = np.concatenate([_normal(22, 3_000, 0.05), _integers(23, 1_000, -2, 3)])
    profile = numeric_profile(reference)
    assert profile.rows == len(reference)
    assert len(profile.quantiles) == QUANTILES  # summarized, not the raw data
    result = numeric_drift("x", profile, current, "ks", None)
    expected = stats.ks_2samp(reference, current, method="asymp")
    assert abs(result.statistics["ks"] - expected.statistic) <= 1 / QUANTILES
    # the p-value uses the true reference size, so it brackets scipy's within that tolerance
    m, n = len(reference), len(current)
    low = drift.ks_p_value(expected.statistic + 1 / QUANTILES, m, n)
    high = drift.ks_p_value(expected.statistic - 1 / QUANTILES, m, n)
    assert low <= result.statistics["ks_p_value"] <= high
    assert drift.ks_p_value(expected.statistic, m, n) == pytest.approx(expected.pvalue, rel=1e-9)
    # Wasserstein from the summary stays close to the exact distance too
    exact = stats.wasserstein_distance(reference, current) / reference.std()
    assert result.statistics["wasserstein_normed"] == pytest.approx(exact, abs=2e-3)


# ---------------------------------------------------------------- Wasserstein


@pytest.mark.parametrize("case", sorted(NUMERIC_CASES))
def test_wasserstein_matches_scipy(case):
    reference, current, result = _numeric(case, "wasserstein")
    expected = stats.wasserstein_distance(reference, current)
    assert result.statistics["wasserstein"] == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert result.statistics["wasserstein_normed"] == pytest.approx(expected / reference.std(), rel=1e-9, abs=1e-12)
    assert result.method == "wasserstein"
    assert result.value == result.statistics["wasserstein_normed"]


def test_wasserstein_verdict_uses_threshold_on_normed_distance():
    reference = _normal(30, 5_000, 10.0, 2.0)
    profile = numeric_profile(reference)
    small = numeric_drift("x", profile, reference + 0.1, "wasserstein", 0.1)  # 0.05 std
    large = numeric_drift("x", profile, reference + 0.4, "wasserstein", 0.1)  # 0.2 std
    drift._decide([small, large])
    assert small.value == pytest.approx(0.1 / reference.std(), rel=1e-9)
    assert not small.drifted
    assert large.drifted


# ---------------------------------------------------------------- Jensen-Shannon and PSI


def _decile_bins(reference: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reference deciles as edges, counted independently of core/drift.py."""
    edges = np.unique(np.quantile(reference, np.linspace(0.1, 0.9, 9)))
    ref_counts = np.array([np.sum(np.digitize(reference, edges, right=False) == i) for i in range(len(edges) + 1)])
    cur_counts = np.array([np.sum(np.digitize(current, edges, right=False) == i) for i in range(len(edges) + 1)])
    return ref_counts, cur_counts


@pytest.mark.parametrize("case", sorted(NUMERIC_CASES))
def test_numeric_jensen_shannon_matches_scipy_over_reference_deciles(case):
    reference, current, result = _numeric(case, "jensenshannon")
    ref_counts, cur_counts = _decile_bins(reference, current)
    expected = jensenshannon(ref_counts / ref_counts.sum(), cur_counts / cur_counts.sum())
    assert result.statistics["jensenshannon"] == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert result.method == "jensenshannon"


@pytest.mark.parametrize("case", sorted(NUMERIC_CASES))
def test_numeric_psi_matches_its_formula(case):
    reference, current, result = _numeric(case, "psi")
    ref_counts, cur_counts = _decile_bins(reference, current)
    ref = np.clip(ref_counts / ref_counts.sum(), drift.EPSILON, None)
    cur = np.clip(cur_counts / cur_counts.sum(), drift.EPSILON, None)
    assert result.statistics["psi"] == pytest.approx(np.sum((cur - ref) * np.log(cur / ref)), rel=1e-9, abs=1e-12)
    assert result.value == result.statistics["psi"]


def test_psi_of_a_known_shift():
    # reference 50/50, current 80/20: PSI = 0.3 ln(1.6) + (-0.3) ln(0.4)
    assert drift.psi(np.array([50, 50]), np.array([80, 20])) == pytest.approx(
        0.3 * np.log(1.6) - 0.3 * np.log(0.4), rel=1e-12
    )
    assert drift.psi(np.array([10, 30]), np.array([10, 30])) == 0.0


CATEGORICAL_REFERENCE = pd.Series(["car"] * 350 + ["home"] * 300 + ["education"] * 150 + ["other"] * 200)
CATEGORICAL_CURRENT = pd.Series(["car"] * 90 + ["home"] * 70 + ["education"] * 95 + ["other"] * 45)


def test_categorical_jensen_shannon_matches_scipy():
    result = categorical_drift("purpose", categorical_profile(CATEGORICAL_REFERENCE), CATEGORICAL_CURRENT,
                               "jensenshannon", None)
    order = ["car", "home", "education", "other"]
    ref = CATEGORICAL_REFERENCE.value_counts()[order].to_numpy(float)
    cur = CATEGORICAL_CURRENT.value_counts()[order].to_numpy(float)
    assert result.statistics["jensenshannon"] == pytest.approx(jensenshannon(ref / ref.sum(), cur / cur.sum()),
                                                               rel=1e-12)
    assert result.value == result.statistics["jensenshannon"]


def test_categorical_jensen_shannon_counts_a_new_category_as_reference_mass_zero():
    current = pd.concat([CATEGORICAL_CURRENT, pd.Series(["crypto"] * 30)], ignore_index=True)
    result = categorical_drift("purpose", categorical_profile(CATEGORICAL_REFERENCE), current, "jensenshannon", None)
    order = ["car", "home", "education", "other", "crypto"]
    ref = CATEGORICAL_REFERENCE.value_counts().reindex(order, fill_value=0).to_numpy(float)
    cur = current.value_counts()[order].to_numpy(float)
    assert result.statistics["jensenshannon"] == pytest.approx(jensenshannon(ref / ref.sum(), cur / cur.sum()),
                                                               rel=1e-12)
    assert result.new_categories == ["crypto"]


# ---------------------------------------------------------------- chi-square and z-test


@pytest.mark.parametrize(
    "current",
    [
        CATEGORICAL_CURRENT,
        CATEGORICAL_REFERENCE.sample(frac=0.3, random_state=4),
        pd.Series(["car"] * 7 + ["home"] * 3),
    ],
    ids=["shifted", "resampled", "missing categories in current"],
)
def test_chi_square_matches_scipy_chisquare_against_reference_proportions(current):
    profile = categorical_profile(CATEGORICAL_REFERENCE)
    result = categorical_drift("purpose", profile, current, "chi2", None)
    order = list(profile.counts)
    observed = current.value_counts().reindex(order, fill_value=0).to_numpy(float)
    reference = np.array([profile.counts[c] for c in order], float)
    expected = stats.chisquare(observed, reference / reference.sum() * observed.sum())
    assert result.statistics["chi2"] == pytest.approx(expected.statistic, rel=1e-9)
    assert result.statistics["chi2_p_value"] == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)
    assert result.method == "chi2"


def test_z_test_squared_is_the_uncorrected_two_by_two_chi_square():
    reference = pd.Series(["yes"] * 300 + ["no"] * 500)
    current = pd.Series(["yes"] * 160 + ["no"] * 140)
    result = categorical_drift("flag", categorical_profile(reference), current, "auto", None)
    assert result.method == "ztest"  # binary, small reference
    table = [[300, 500], [160, 140]]
    chi2 = stats.chi2_contingency(table, correction=False)
    assert result.statistics["ztest"] ** 2 == pytest.approx(chi2.statistic, rel=1e-9)
    assert result.statistics["ztest_p_value"] == pytest.approx(chi2.pvalue, rel=1e-9)


# ---------------------------------------------------------------- method: auto


@pytest.mark.parametrize(
    ("rows", "expected"),
    [(200, "ks"), (SMALL_SAMPLE, "ks"), (SMALL_SAMPLE + 1, "wasserstein"), (50_000, "wasserstein")],
)
def test_auto_numeric_method_follows_reference_size(rows, expected):
    profile = numeric_profile(_normal(40, rows))
    assert profile.rows == rows
    assert numeric_drift("x", profile, _normal(41, 300), "auto", None).method == expected


@pytest.mark.parametrize(
    ("rows", "categories", "expected"),
    [
        (SMALL_SAMPLE, ["a", "b"], "ztest"),
        (SMALL_SAMPLE, ["a", "b", "c"], "chi2"),
        (SMALL_SAMPLE + 1, ["a", "b"], "jensenshannon"),
        (SMALL_SAMPLE + 1, ["a", "b", "c"], "jensenshannon"),
    ],
)
def test_auto_categorical_method_follows_reference_size_and_cardinality(rows, categories, expected):
    reference = pd.Series(np.resize(categories, rows))
    current = pd.Series(np.resize(categories, 100))
    result = categorical_drift("c", categorical_profile(reference), current, "auto", None)
    assert result.method == expected
    assert result.threshold == drift.DEFAULT_THRESHOLDS[expected]


def test_a_new_category_makes_a_binary_column_non_binary_for_auto():
    reference = pd.Series(np.resize(["a", "b"], 500))
    current = pd.Series(np.resize(["a", "b", "c"], 90))
    assert categorical_drift("c", categorical_profile(reference), current, "auto", None).method == "chi2"


def test_a_numeric_only_method_on_a_categorical_column_falls_back_by_size():
    small = categorical_profile(pd.Series(np.resize(["a", "b", "c"], 500)))
    large = categorical_profile(pd.Series(np.resize(["a", "b", "c"], 5000)))
    current = pd.Series(np.resize(["a", "b", "c"], 90))
    assert categorical_drift("c", small, current, "wasserstein", None).method == "chi2"
    assert categorical_drift("c", large, current, "wasserstein", None).method == "jensenshannon"
    assert categorical_drift("c", large, current, "ks", None).method == "jensenshannon"
    numeric = numeric_profile(_normal(42, 500))
    assert numeric_drift("x", numeric, _normal(43, 50), "chi2", None).method == "ks"


def test_explicit_threshold_overrides_the_default():
    profile = numeric_profile(_normal(44, 5000))
    result = numeric_drift("x", profile, _normal(45, 500), "wasserstein", 0.25)
    assert result.threshold == 0.25


# ---------------------------------------------------------------- Benjamini-Hochberg


def _grid(m: int, shift: float = 0.0) -> np.ndarray:
    return stats.norm.ppf((np.arange(m) + 0.5) / m) + shift


def test_p_value_tests_are_corrected_together_with_benjamini_hochberg():
    reference = pd.DataFrame({f"x{i}": _grid(1000) for i in range(5)})
    reference["c"] = np.resize(["a", "b", "c"], 1000)
    current = pd.DataFrame({f"x{i}": _grid(1000) for i in range(5)})
    current["x0"] = _grid(1000, 0.16)  # raw KS p ~ 0.03: significant alone, not after correction
    current["x1"] = _grid(1000, 0.5)  # clearly drifted
    current["c"] = np.resize(["a", "b", "c"], 1000)
    profile = build_profile(reference, [f"x{i}" for i in range(5)], ["c"])
    report = compute_drift(profile, current, method="auto", share=0.5)

    by_column = {f.column: f for f in report.features}
    assert {f.method for f in report.features} == {"ks", "chi2"}
    raw = [f.statistics["ks_p_value"] if f.method == "ks" else f.statistics["chi2_p_value"] for f in report.features]
    adjusted = stats.false_discovery_control(raw, method="bh")
    for feature, expected in zip(report.features, adjusted):
        assert feature.statistics["p_value_bh"] == pytest.approx(expected, rel=1e-12)
        assert feature.value == pytest.approx(expected, rel=1e-12)
        assert feature.drifted == (expected < 0.05)
    assert by_column["x0"].statistics["ks_p_value"] < 0.05  # the raw test alone would flag it
    assert not by_column["x0"].drifted  # but BH over six tests does not
    assert by_column["x1"].drifted
    assert report.drifted_columns() == ["x1"]


def test_distance_methods_are_not_corrected():
    reference = pd.DataFrame({"x": _normal(50, 5000), "y": _normal(51, 5000)})
    profile = build_profile(reference, ["x", "y"], [])
    report = compute_drift(profile, reference.iloc[:2000], method="auto")
    assert all(f.method == "wasserstein" for f in report.features)
    assert all("p_value_bh" not in f.statistics for f in report.features)


# ---------------------------------------------------------------- the dataset verdict


def _four_columns(drifted: int) -> tuple[ReferenceProfile, pd.DataFrame]:
    reference = pd.DataFrame({f"x{i}": _normal(60 + i, 3000) for i in range(4)})
    current = pd.DataFrame({f"x{i}": _normal(70 + i, 1000, 3.0 if i < drifted else 0.0) for i in range(4)})
    return build_profile(reference, list(reference.columns), []), current


@pytest.mark.parametrize(
    ("drifted", "share", "expected"),
    [(0, 0.25, False), (1, 0.25, True), (1, 0.3, False), (2, 0.5, True), (1, 0.5, False), (4, 1.0, True)],
)
def test_dataset_drifts_when_the_drifted_share_reaches_the_threshold(drifted, share, expected):
    profile, current = _four_columns(drifted)
    report = compute_drift(profile, current, share=share)
    assert len(report.drifted_columns()) == drifted
    assert report.share_drifted == pytest.approx(drifted / 4)
    assert report.share_threshold == share
    assert report.dataset_drifted is expected
    assert report.rows == len(current)


# ---------------------------------------------------------------- awkward batches


def _mixed_reference(rows: int = 3000) -> tuple[ReferenceProfile, pd.DataFrame]:
    rng = np.random.default_rng(80)
    reference = pd.DataFrame({
        "income": rng.lognormal(10.8, 0.4, rows),
        "age": rng.integers(18, 90, rows),
        "purpose": rng.choice(["car", "home", "education", "other"], rows),
        "housing": rng.choice(["rent", "own", "mortgage"], rows),
    })
    return build_profile(reference, ["income", "age"], ["purpose", "housing"]), reference


def test_a_missing_column_is_reported_and_counts_as_drifted():
    profile, reference = _mixed_reference()
    current = reference.sample(1000, random_state=1).drop(columns=["housing"])
    report = compute_drift(profile, current, share=0.5)
    assert report.missing_columns == ["housing"]
    assert "housing" not in {f.column for f in report.features}
    assert report.share_drifted == pytest.approx(1 / 4)
    assert not report.dataset_drifted
    everything_missing = compute_drift(profile, pd.DataFrame({"unrelated": [1, 2, 3]}), share=0.5)
    assert sorted(everything_missing.missing_columns) == ["age", "housing", "income", "purpose"]
    assert everything_missing.share_drifted == 1.0
    assert everything_missing.dataset_drifted


@pytest.mark.parametrize("method", ["auto", "ks", "psi", "wasserstein", "jensenshannon", "chi2"])
def test_all_null_columns_in_the_batch_are_reported(method):
    profile, reference = _mixed_reference()
    current = reference.sample(800, random_state=2).reset_index(drop=True)
    current["income"] = np.nan
    current["purpose"] = None
    report = compute_drift(profile, current, method=method, share=0.9)
    by_column = {f.column: f for f in report.features}
    for column in ("income", "purpose"):
        assert by_column[column].note == "all values are null"
        assert by_column[column].drifted
        assert by_column[column].null_share_current == 1.0
        assert by_column[column].rows == 800
    assert not by_column["age"].drifted
    assert report.share_drifted == pytest.approx(0.5)
    assert report.table_rows()  # renders


@pytest.mark.parametrize("method", ["auto", "ks", "psi", "wasserstein", "jensenshannon", "chi2"])
def test_columns_all_null_in_the_reference_are_reported(method):
    reference = pd.DataFrame({
        "x": np.full(500, np.nan), "y": _normal(90, 500), "c": pd.Series([None] * 500, dtype=object),
    })
    profile = build_profile(reference, ["x", "y"], ["c"])
    assert profile.numeric["x"].rows == 0 and profile.categorical["c"].rows == 0
    current = pd.DataFrame({"x": _normal(91, 500), "y": reference["y"][::-1].to_numpy(), "c": ["a"] * 500})
    report = compute_drift(profile, current, method=method, share=0.5)  # must not raise
    by_column = {f.column: f for f in report.features}
    for column in ("x", "c"):
        assert "null" in by_column[column].note
        assert by_column[column].drifted  # values where training had none
    assert not by_column["y"].drifted
    # and null in both: nothing changed
    both = compute_drift(profile, current.assign(x=np.nan, c=None), method=method, share=0.5)
    assert not any(f.drifted for f in both.features)


def test_new_categories_are_reported_without_crashing():
    profile, reference = _mixed_reference()
    current = reference.sample(900, random_state=3).reset_index(drop=True)
    current.loc[:99, "purpose"] = "crypto"
    current.loc[100:104, "housing"] = "boat"
    for method in ("auto", "chi2", "psi", "jensenshannon"):
        report = compute_drift(profile, current, method=method)
        by_column = {f.column: f for f in report.features}
        assert by_column["purpose"].new_categories == ["crypto"]
        assert by_column["housing"].new_categories == ["boat"]
        assert by_column["purpose"].drifted  # 11% of mass in an unseen category
        assert all(np.isfinite(v) for v in by_column["purpose"].statistics.values())


def test_a_categorical_column_that_arrives_as_numbers_is_compared_as_strings():
    reference = pd.DataFrame({"grade": np.resize(["1", "2", "3"], 3000)})
    profile = build_profile(reference, [], ["grade"])
    report = compute_drift(profile, pd.DataFrame({"grade": np.resize([1, 2, 3], 600)}))
    (feature,) = report.features
    assert feature.new_categories == []
    assert not feature.drifted


def test_prediction_drift_is_judged_separately_from_the_feature_share():
    reference = pd.DataFrame({"x": _normal(100, 4000)})
    scores = np.clip(_normal(101, 4000, 0.3, 0.1), 0, 1)
    profile = build_profile(reference, ["x"], [], predictions=scores)
    stable = compute_drift(profile, reference.iloc[:1000], predictions=scores[:1000])
    shifted = compute_drift(profile, reference.iloc[:1000], predictions=np.clip(scores[:1000] + 0.2, 0, 1))
    assert stable.prediction is not None and not stable.prediction.drifted
    assert shifted.prediction is not None and shifted.prediction.drifted
    assert shifted.prediction.column == "prediction"
    assert not shifted.dataset_drifted  # the features did not move
    labels = build_profile(reference, ["x"], [], predictions=np.resize(["a", "b", "c"], 4000),
                           predictions_categorical=True)
    moved = compute_drift(labels, reference.iloc[:900], predictions=np.array(["c"] * 900))
    assert isinstance(labels.prediction, CategoricalProfile)
    assert moved.prediction.kind == "categorical" and moved.prediction.drifted


# ---------------------------------------------------------------- the stored profile


def test_profile_round_trips_through_bytes_without_pickle():
    rng = np.random.default_rng(110)
    frame = pd.DataFrame({
        "big": rng.normal(size=QUANTILES + 5_000),
        "small": np.where(rng.random(QUANTILES + 5_000) < 0.1, np.nan, rng.normal(size=QUANTILES + 5_000)),
        "cat": rng.choice(["a", "b", "c"], QUANTILES + 5_000),
    })
    for predictions, categorical in [(rng.random(len(frame)), False), (rng.choice(["0", "1"], len(frame)), True)]:
        profile = build_profile(frame, ["big", "small"], ["cat"], predictions, categorical)
        data = profile.to_bytes()
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:  # raises on any object array
            for name in arrays.files:
                assert arrays[name].dtype != object, name
        restored = ReferenceProfile.from_bytes(data)
        assert restored.columns() == ["big", "small", "cat"]
        for name, original in profile.numeric.items():
            _assert_same_numeric(restored.numeric[name], original)
        assert restored.categorical == profile.categorical
        if categorical:
            assert restored.prediction == profile.prediction
        else:
            _assert_same_numeric(restored.prediction, profile.prediction)
        # and it judges a batch exactly like the original
        batch = frame.sample(2000, random_state=5)
        assert _verdicts(compute_drift(restored, batch)) == _verdicts(compute_drift(profile, batch))


def _assert_same_numeric(restored: NumericProfile, original: NumericProfile) -> None:
    assert isinstance(restored, NumericProfile)
    assert restored.rows == original.rows
    assert restored.std == original.std
    assert restored.null_share == original.null_share
    np.testing.assert_array_equal(restored.quantiles, original.quantiles)
    np.testing.assert_array_equal(restored.psi_edges, original.psi_edges)


def _verdicts(report: drift.DriftReport) -> list[tuple]:
    return [(f.column, f.method, f.value, f.drifted) for f in report.features]


def test_profile_without_prediction_round_trips():
    profile = build_profile(pd.DataFrame({"x": [1.0, 2.0, 3.0], "c": ["a", "b", "a"]}), ["x"], ["c"])
    restored = ReferenceProfile.from_bytes(profile.to_bytes())
    assert restored.prediction is None
    assert restored.categorical["c"].counts == {"a": 2, "b": 1}
    np.testing.assert_array_equal(restored.numeric["x"].quantiles, [1.0, 2.0, 3.0])


def test_a_profile_is_compact_for_large_training_sets():
    profile = numeric_profile(_normal(120, 500_000))
    assert len(profile.quantiles) == QUANTILES
    assert np.all(np.diff(profile.quantiles) >= 0)
    assert len(build_profile(pd.DataFrame({"x": _normal(121, 500_000)}), ["x"], []).to_bytes()) < 400_000
