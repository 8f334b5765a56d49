"""What keeping a version's snapshot costs: the credit_default chain through Dagster in process
(bench.orchestration_overhead.run_dagster: the shipped spec with the generator's `rows`, 1M by
default, no gate floor, a fresh registry each run) with the snapshot work timed inside the same run.

The snapshot work is the two calls the chain makes for it: `store_training_data` in the
`features` step (the data as it entered features, as Parquet, checked by reading it back) and
`stage_snapshot` in packaging (the spec, the environment and the split). Both are wrapped with
a timer where the chain calls them, so each run gives its wall time with snapshots and the time
the snapshot calls took; the run without snapshots is the same run less that time. Bytes: what
the version's snapshot keeps in the store. Target: snapshot time under 10% of the run without it.

    python -m bench.snapshot_cost [--rows 1000000] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import median, print_table, write_results
from bench.orchestration_overhead import run_dagster, thread_limit
from bench.sampler_overhead import bench_spec

TARGET_RATIO = 0.10
# where the chain calls the snapshot functions: (module, name)
SNAPSHOT_CALLS = (("ml_pipelines.components.assets.features", "store_training_data"),
                  ("ml_pipelines.core.packaging", "stage_snapshot"))


def _timed_snapshot_calls(spent: list[float]) -> list[tuple[Any, str, Any]]:
    """Wrap each snapshot call with a timer adding to `spent`; returns what to restore."""
    import importlib

    restore = []
    for module_name, name in SNAPSHOT_CALLS:
        module = importlib.import_module(module_name)
        original = getattr(module, name)

        @functools.wraps(original)
        def timed_call(*args, _original=original, **kwargs):
            start = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                spent.append(time.perf_counter() - start)

        setattr(module, name, timed_call)
        restore.append((module, name, original))
    return restore


def run_once(spec, root: Path) -> dict[str, Any]:
    from ml_pipelines.core.registry import ModelRegistry
    from ml_pipelines.core.storage import LocalObjectStore

    spent: list[float] = []
    restore = _timed_snapshot_calls(spent)
    try:
        outcome = run_dagster(spec, root)
    finally:
        for module, name, original in restore:
            setattr(module, name, original)
    if len(spent) != len(SNAPSHOT_CALLS):
        raise AssertionError(f"{len(spent)} snapshot calls were timed, not {len(SNAPSHOT_CALLS)}")
    registry = ModelRegistry(LocalObjectStore(root / "registry"))
    record = registry.get_version(spec.name, registry.get_alias(spec.name, "champion"))
    snapshot_s = sum(spent)
    return {"wall_s": outcome["wall_s"], "snapshot_s": snapshot_s, "without_s": outcome["wall_s"] - snapshot_s,
            "ratio": snapshot_s / (outcome["wall_s"] - snapshot_s), "snapshot_bytes": record.snapshot.bytes,
            "files": {name: f.bytes for name, f in record.snapshot.files.items()},
            "load_average": round(os.getloadavg()[0], 2)}


def _measure(args: argparse.Namespace) -> dict[str, Any]:
    load_before = [round(x, 2) for x in os.getloadavg()]
    warm = Path(tempfile.mkdtemp(prefix="bench-snapshot-warmup-"))
    try:  # imports, the first GX context, thread pools: paid before any timed run
        run_once(bench_spec(min(args.rows, 5000)), warm)
    finally:
        shutil.rmtree(warm, ignore_errors=True)
    spec, runs = bench_spec(args.rows), []
    for repeat in range(args.repeats):
        root = Path(tempfile.mkdtemp(prefix="bench-snapshot-"))
        try:
            runs.append(run_once(spec, root))
        finally:
            shutil.rmtree(root, ignore_errors=True)
        print(f"  run {repeat + 1}: wall {runs[-1]['wall_s']:.2f}s, snapshot {runs[-1]['snapshot_s']:.2f}s"
              f" ({runs[-1]['ratio']:.1%}), {runs[-1]['snapshot_bytes'] / 1e6:.1f} MB", flush=True)
    ratio = median([r["ratio"] for r in runs])
    return {"pipeline": "credit_default", "rows": args.rows, "repeats": args.repeats,
            "threads": args.threads or "library defaults", "load_average_before": load_before, "runs": runs,
            "wall_s": median([r["wall_s"] for r in runs]), "snapshot_s": median([r["snapshot_s"] for r in runs]),
            "without_s": median([r["without_s"] for r in runs]), "ratio": ratio,
            "snapshot_bytes": runs[-1]["snapshot_bytes"], "files": runs[-1]["files"],
            "target_ratio": TARGET_RATIO, "within_target": ratio < TARGET_RATIO}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="native thread pools (0: library defaults)")
    args = parser.parse_args(argv)
    with thread_limit(args.threads):
        payload = _measure(args)
    path = write_results("snapshot_cost", payload)
    print_table(f"snapshot cost: credit_default, {args.rows:,} rows (median of {args.repeats})",
                ["figure", "value"],
                [["run with snapshots, s", payload["wall_s"]], ["snapshot calls, s", payload["snapshot_s"]],
                 ["run without them, s", payload["without_s"]], ["snapshot / run without", payload["ratio"]],
                 ["snapshot bytes", payload["snapshot_bytes"]]])
    verdict = "within" if payload["within_target"] else "ABOVE"
    print(f"\n{payload['ratio']:.1%} ({verdict} the {TARGET_RATIO:.0%} target); load average {payload['load_average_before']}"
          f" before; results: {path}")
    return payload


if __name__ == "__main__":
    main()
