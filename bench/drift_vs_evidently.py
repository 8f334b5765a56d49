"""Our drift statistics vs Evidently's DataDriftPreset on the same data.

1M reference rows and 1M current rows, 20 features (12 numeric of assorted shapes,
8 categorical from binary to 50 levels, some with nulls), some of them drifted in the
current batch. Both sides judge every column with the same statistic and threshold:
normed Wasserstein >= 0.1 for numeric columns, Jensen-Shannon distance >= 0.1 for
categorical ones (Evidently's defaults above 1,000 reference rows).

  - ours: ml_pipelines.core.drift.compute_drift(method="wasserstein", threshold=0.1)
    against a reference profile built beforehand (what model_package stores as
    profile.npz), so the reference data is not read at check time. Timed as the
    drift_report asset runs it (every statistic: KS, Wasserstein, PSI, Jensen-Shannon)
    and with the deciding statistic only.
  - Evidently: Report([DataDriftPreset(per_column_method=..., per_column_threshold=...)])
    .run(current, reference), in its own virtualenv (bench/.venv-evidently, created on
    first use: Evidently needs pandas < 3, this project pins pandas 3).

Each side runs in its own subprocess on the same parquet files, so each peak RSS
(VmHWM, the kernel's high-water mark) is its own. Reported: the time ratio (target: ours >= 50x
faster), both peaks, and how often the per-column verdicts agree (target >= 99%),
over the 1M-row scenario plus a few smaller ones with random drift sizes.

    python -m bench.drift_vs_evidently [--rows 1000000] [--rounds 4] [--round-rows 200000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
EVIDENTLY_VENV = BENCH_DIR / ".venv-evidently"
EVIDENTLY_REQUIREMENTS = ["evidently", "pandas<3", "pyarrow"]
THRESHOLD = 0.1
NUMERIC = [f"num_{i:02d}" for i in range(12)]
CATEGORICAL = [f"cat_{i}" for i in range(8)]
TARGET_SPEEDUP = 50.0
TARGET_AGREEMENT = 0.99


def _peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM, not getrusage: ru_maxrss survives fork+exec, so a
    worker would report at least its parent's peak (the parent generated the data)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# ---------------------------------------------------------------- data


def drift_plan(rng=None) -> dict[str, float]:
    """Drift size per column: fixed for the main scenario, random around the threshold otherwise."""
    fixed = {
        "num_00": 0.0, "num_01": 0.05, "num_02": 0.15, "num_03": 0.2, "num_04": 0.0, "num_05": 0.3,
        "num_06": 0.0, "num_07": 0.05, "num_08": 0.0, "num_09": 0.2, "num_10": 0.0, "num_11": 0.08,
        "cat_0": 0.0, "cat_1": 0.1, "cat_2": 0.5, "cat_3": 0.0, "cat_4": 0.3, "cat_5": 0.1, "cat_6": 0.4,
        "cat_7": 0.0,
    }
    if rng is None:
        return fixed
    return {c: float(rng.uniform(0, 0.4)) if rng.random() < 0.6 else 0.0 for c in fixed}


def generate(rows: int, seed: int, plan: dict[str, float]):
    """One frame; plan[column] = 0 gives the reference distribution."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    d = plan
    data: dict[str, Any] = {
        "num_00": rng.normal(d["num_00"], 1, rows),  # shift in std units
        "num_01": rng.normal(100 + 15 * d["num_01"], 15, rows),
        "num_02": rng.normal(0, 1, rows) + d["num_02"],
        "num_03": rng.normal(0, 1 + d["num_03"], rows),  # wider
        "num_04": rng.lognormal(10 + d["num_04"], 0.5, rows),  # skewed
        "num_05": rng.lognormal(3 + d["num_05"], 0.8, rows),
        "num_06": rng.exponential(1 + d["num_06"], rows),
        "num_07": rng.exponential(2 * (1 + d["num_07"]), rows),
        "num_08": rng.poisson(4 + 2 * d["num_08"], rows).astype("float64"),  # heavy ties
        "num_09": rng.poisson(4 * (1 + d["num_09"]), rows).astype("float64"),
        "num_10": rng.uniform(0, 1 + d["num_10"], rows),
        "num_11": np.where(rng.random(rows) < 0.05, np.nan, rng.normal(d["num_11"], 1, rows)),  # 5% nulls
    }
    five = np.array(list("abcde"))
    base5 = np.array([0.3, 0.25, 0.2, 0.15, 0.1])
    levels50 = np.array([f"level_{i:02d}" for i in range(50)])
    zipf = 1 / np.arange(1, 51)
    zipf /= zipf.sum()

    def mix(p: np.ndarray, q: np.ndarray, t: float) -> np.ndarray:
        m = (1 - t) * p + t * q
        return m / m.sum()

    def pick(values: np.ndarray, p: np.ndarray) -> np.ndarray:
        return values[rng.choice(len(values), size=rows, p=p)]

    data["cat_0"] = pick(five, mix(base5, base5[::-1], d["cat_0"]))
    data["cat_1"] = pick(five, mix(base5, base5[::-1], d["cat_1"]))
    data["cat_2"] = pick(five, mix(base5, np.array([0.05, 0.05, 0.1, 0.3, 0.5]), d["cat_2"]))
    data["cat_3"] = pick(levels50, mix(zipf, zipf[::-1], d["cat_3"]))
    # cat_4: new levels appear in the current batch
    with_new = np.concatenate([levels50, [f"new_{i}" for i in range(5)]])
    data["cat_4"] = pick(with_new, mix(np.concatenate([zipf, np.zeros(5)]), np.full(55, 1 / 55), d["cat_4"]))
    data["cat_5"] = pick(np.array(["yes", "no"]), mix(np.array([0.3, 0.7]), np.array([0.7, 0.3]), d["cat_5"]))
    data["cat_6"] = pick(np.array(["yes", "no"]), mix(np.array([0.1, 0.9]), np.array([0.6, 0.4]), d["cat_6"]))
    cat7 = pick(np.array(["x", "y", "z"]), mix(np.array([0.5, 0.3, 0.2]), np.array([0.2, 0.3, 0.5]), d["cat_7"]))
    data["cat_7"] = np.where(rng.random(rows) < 0.05, None, cat7).astype(object)  # 5% nulls
    frame = pd.DataFrame(data)
    for column in CATEGORICAL:
        frame[column] = frame[column].astype("str") if column != "cat_7" else frame[column]
    return frame


def write_scenario(directory: Path, name: str, rows: int, seed: int, plan: dict[str, float]) -> dict[str, Any]:
    from ml_pipelines.core.drift import build_profile

    folder = directory / name
    folder.mkdir(parents=True)
    reference = generate(rows, seed, {c: 0.0 for c in plan})
    current = generate(rows, seed + 1, plan)
    reference.to_parquet(folder / "reference.parquet", index=False)
    current.to_parquet(folder / "current.parquet", index=False)
    started = time.perf_counter()
    profile = build_profile(reference, NUMERIC, CATEGORICAL)
    data = profile.to_bytes()
    profile_s = time.perf_counter() - started
    (folder / "profile.npz").write_bytes(data)
    return {"name": name, "rows": rows, "seed": seed, "plan": plan, "profile_build_s": profile_s,
            "profile_bytes": len(data), "folder": str(folder)}


# ---------------------------------------------------------------- the two workers (subprocesses)


def worker_ours(folder: Path, repeats: int) -> dict[str, Any]:
    import pandas as pd

    from ml_pipelines.core.drift import ReferenceProfile, compute_drift

    imported = _peak_rss_mb()
    started = time.perf_counter()
    current = pd.read_parquet(folder / "current.parquet")
    profile = ReferenceProfile.from_bytes((folder / "profile.npz").read_bytes())
    load_s = time.perf_counter() - started
    loaded = _peak_rss_mb()
    timings: dict[str, list[float]] = {"all_statistics": [], "deciding_statistic": []}
    report = None
    for _ in range(repeats):
        for label, statistics in (("all_statistics", None), ("deciding_statistic", ("wasserstein",))):
            started = time.perf_counter()
            report = compute_drift(profile, current, method="wasserstein", threshold=THRESHOLD, share=0.5,
                                   numeric_statistics=statistics)
            timings[label].append(time.perf_counter() - started)
    columns = {f.column: {"method": f.method, "value": f.value, "drifted": bool(f.drifted)} for f in report.features}
    return {"timings_s": timings, "load_s": load_s, "rss_after_import_mb": imported, "rss_after_load_mb": loaded,
            "peak_rss_mb": _peak_rss_mb(), "columns": columns, "missing": report.missing_columns}


def worker_evidently(folder: Path) -> dict[str, Any]:
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently import __version__ as evidently_version
    from evidently.presets import DataDriftPreset

    imported = _peak_rss_mb()
    started = time.perf_counter()
    reference = pd.read_parquet(folder / "reference.parquet")
    current = pd.read_parquet(folder / "current.parquet")
    load_s = time.perf_counter() - started
    loaded = _peak_rss_mb()
    started = time.perf_counter()
    definition = DataDefinition(numerical_columns=NUMERIC, categorical_columns=CATEGORICAL)
    preset = DataDriftPreset(
        per_column_method={**{c: "wasserstein" for c in NUMERIC}, **{c: "jensenshannon" for c in CATEGORICAL}},
        per_column_threshold={c: THRESHOLD for c in NUMERIC + CATEGORICAL},
    )
    snapshot = Report([preset]).run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )
    run_s = time.perf_counter() - started
    columns, drifted_count = {}, None
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if config.get("type", "").endswith("ValueDrift"):
            value = float(metric["value"])
            columns[config["column"]] = {"method": config["method"], "value": value, "drifted": value >= THRESHOLD}
        elif config.get("type", "").endswith("DriftedColumnsCount"):
            drifted_count = metric["value"]["count"]
    return {"run_s": run_s, "load_s": load_s, "rss_after_import_mb": imported, "rss_after_load_mb": loaded,
            "peak_rss_mb": _peak_rss_mb(), "columns": columns, "drifted_count": drifted_count,
            "evidently": evidently_version, "pandas": pd.__version__}


# ---------------------------------------------------------------- driver


def evidently_python() -> Path:
    python = EVIDENTLY_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {EVIDENTLY_VENV} ({' '.join(EVIDENTLY_REQUIREMENTS)}) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(EVIDENTLY_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *EVIDENTLY_REQUIREMENTS], check=True)
    return python


def run_worker(python: Path, role: str, folder: str, repeats: int) -> dict[str, Any]:
    out = Path(folder) / f"{role}.json"
    command = [str(python), str(Path(__file__).resolve()), "--role", role, "--folder", folder,
               "--repeats", str(repeats), "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "EVIDENTLY_DISABLE_TELEMETRY": "1", "DO_NOT_TRACK": "1"}
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=REPO_ROOT, env=env)
    result = json.loads(out.read_text())
    result["process_wall_s"] = time.perf_counter() - started
    return result


def compare(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    rows = []
    for column in NUMERIC + CATEGORICAL:
        a, b = ours["columns"][column], theirs["columns"][column]
        rows.append({"column": column, "ours_method": a["method"], "evidently_method": b["method"],
                     "ours": a["value"], "evidently": b["value"], "ours_drifted": a["drifted"],
                     "evidently_drifted": b["drifted"], "agree": a["drifted"] == b["drifted"]})
    return {"columns": rows, "agree": sum(r["agree"] for r in rows), "total": len(rows),
            "max_abs_difference": max(abs(r["ours"] - r["evidently"]) for r in rows)}


def _verdict(drifted: bool) -> str:
    return "DRIFT" if drifted else "ok"


def _run_scenarios(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The main scenario and --rounds random-drift ones, each run by ours and by Evidently (own venv)."""
    import numpy as np

    from bench._common import median

    python = evidently_python()
    scratch = Path(tempfile.mkdtemp(prefix="drift-vs-evidently-"))
    try:
        scenarios = [write_scenario(scratch, "main", args.rows, 1, drift_plan())]
        rng = np.random.default_rng(2026)
        for i in range(args.rounds):
            scenarios.append(write_scenario(scratch, f"round_{i}", args.round_rows, 100 + 10 * i, drift_plan(rng)))
        for scenario in scenarios:
            print(f"{scenario['name']}: {scenario['rows']:,} rows x {len(NUMERIC) + len(CATEGORICAL)} columns",
                  flush=True)
            scenario["ours"] = run_worker(Path(sys.executable), "ours", scenario["folder"], args.repeats)
            scenario["evidently"] = run_worker(python, "evidently", scenario["folder"], 1)
            scenario["agreement"] = compare(scenario["ours"], scenario["evidently"])
            scenario["ours"]["median_s"] = {k: median(v) for k, v in scenario["ours"]["timings_s"].items()}
            scenario["speedup"] = {k: scenario["evidently"]["run_s"] / v
                                   for k, v in scenario["ours"]["median_s"].items()}
            del scenario["folder"]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return scenarios


def _print_summary(rows: int, scenarios: list[dict[str, Any]], path) -> None:
    from bench._common import machine, print_table

    main_run = scenarios[0]
    agree = sum(s["agreement"]["agree"] for s in scenarios)
    total = sum(s["agreement"]["total"] for s in scenarios)
    print_table(
        f"per-column verdicts, main scenario ({rows:,} rows; threshold {THRESHOLD})",
        ["column", "statistic", "ours", "evidently", "ours drift", "evidently drift", "agree"],
        [[r["column"], r["ours_method"], r["ours"], r["evidently"], _verdict(r["ours_drifted"]),
          _verdict(r["evidently_drifted"]), "yes" if r["agree"] else "NO"] for r in main_run["agreement"]["columns"]],
    )
    print_table(
        "drift check: ours vs Evidently DataDriftPreset",
        ["scenario", "rows", "ours all stats s", "ours deciding s", "evidently s", "speedup", "agree",
         "ours peak MB", "evidently peak MB"],
        [[s["name"], s["rows"], s["ours"]["median_s"]["all_statistics"], s["ours"]["median_s"]["deciding_statistic"],
          s["evidently"]["run_s"], f"{s['speedup']['all_statistics']:.0f}x / {s['speedup']['deciding_statistic']:.0f}x",
          f"{s['agreement']['agree']}/{s['agreement']['total']}", s["ours"]["peak_rss_mb"],
          s["evidently"]["peak_rss_mb"]] for s in scenarios],
    )
    speed = main_run["speedup"]
    print(
        f"\n{rows:,} rows: ours {main_run['ours']['median_s']['all_statistics']:.2f}s (every statistic, as the "
        f"drift_report asset runs) / {main_run['ours']['median_s']['deciding_statistic']:.2f}s (deciding statistic "
        f"only) vs Evidently {main_run['evidently']['run_s']:.1f}s: {speed['all_statistics']:.0f}x / "
        f"{speed['deciding_statistic']:.0f}x faster (target >= {TARGET_SPEEDUP:.0f}x)\n"
        f"peak RSS: ours {main_run['ours']['peak_rss_mb']:.0f} MB (current batch + profile), Evidently "
        f"{main_run['evidently']['peak_rss_mb']:.0f} MB (reference + current)\n"
        f"verdicts agree on {agree}/{total} columns ({agree / total:.1%}; target >= {TARGET_AGREEMENT:.0%})\n"
        f"load average {machine()['load_average']}\nwrote {path}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=4, help="extra agreement scenarios with random drift")
    parser.add_argument("--round-rows", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of ours (median)")
    parser.add_argument("--role", choices=["main", "ours", "evidently"], default="main")
    parser.add_argument("--folder")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.role != "main":
        folder = Path(args.folder)
        result = worker_ours(folder, args.repeats) if args.role == "ours" else worker_evidently(folder)
        Path(args.out).write_text(json.dumps(result))
        return 0

    from bench._common import write_results

    scenarios = _run_scenarios(args)
    main_run = scenarios[0]
    agree = sum(s["agreement"]["agree"] for s in scenarios)
    total = sum(s["agreement"]["total"] for s in scenarios)
    payload = {
        "rows": args.rows,
        "columns": {"numeric": len(NUMERIC), "categorical": len(CATEGORICAL)},
        "statistics": {"numeric": "normed Wasserstein", "categorical": "Jensen-Shannon", "threshold": THRESHOLD},
        "ours_s": main_run["ours"]["median_s"],
        "evidently_s": main_run["evidently"]["run_s"],
        "speedup": main_run["speedup"],
        "target_speedup": TARGET_SPEEDUP,
        "peak_rss_mb": {"ours": main_run["ours"]["peak_rss_mb"], "evidently": main_run["evidently"]["peak_rss_mb"]},
        "profile_build_s": main_run["profile_build_s"],
        "profile_bytes": main_run["profile_bytes"],
        "agreement": {"agree": agree, "total": total, "share": agree / total, "target": TARGET_AGREEMENT,
                      "main_scenario": f"{main_run['agreement']['agree']}/{main_run['agreement']['total']}"},
        "evidently_version": main_run["evidently"]["evidently"],
        "evidently_pandas": main_run["evidently"]["pandas"],
        "scenarios": scenarios,
    }
    path = write_results("drift_vs_evidently", payload)

    _print_summary(args.rows, scenarios, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
