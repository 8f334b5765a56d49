"""What the model service costs on top of calling the model: throughput and p50/p99
latency of POST /predict (one record per request) at concurrency 1, 8 and 64, on
loopback, for

- baseline:        a minimal Starlette app under uvicorn calling the same model in
                   process (registry.load_model + predict), bench/_serving_baseline.py
- batched:         `ml-pipelines serve` as shipped (adaptive batching, audit on)
- batched_no_audit: the same with ML_PIPELINES_AUDIT=off
- unbatched:       ML_PIPELINES_SERVING='{"batchable": false}', audit on
- shadow:          batched with audit, and serving.shadow on: the challenger (an older
                   version) scores every request too, into the audit trail

Everything is reported against the baseline measured in the same run. Targets: at
concurrency 1 the batched service (audit on) reaches >= 0.9x the baseline's throughput,
at concurrency 64 >= 0.7x, the audit trail costs <= 10% of the batched service's throughput, and
shadow scoring costs <= 10% of its throughput and p50 latency.

One small credit-default classifier (LogisticRegression, a categorical and a
nullable column) is trained into a temporary platform root first. All servers
start together, then every (concurrency, server) cell is measured for --seconds
(after a warm-up) in --rounds rounds, the servers' order rotating each round (audit
on and off always back to back), so that drift in machine load hits all of them
alike; the cell's figures are the medians over rounds, and ratios are the medians
of per-round ratios. Concurrency only rises during the run (BentoML re-fits its
batching wait slowly). Each cell also records the CPU seconds the server's processes
spent per request, which says where the time goes. Native thread pools are
limited to one thread in every server. The client is a small raw HTTP/1.1
keep-alive client on asyncio (one connection per concurrent caller), so that the
load generator costs little next to the servers on a small machine.

    python -m bench.serving_throughput [--seconds 4] [--warmup 2] [--rounds 4] [--concurrency 1 8 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from itertools import cycle
from pathlib import Path
from typing import Any

from bench._common import median, print_table, write_results

PIPELINE = "credit_serving"
TRAIN_ROWS = 3000
HOST = "127.0.0.1"
TARGET_THROUGHPUT_RATIO = 0.7  # batched (audit on) / baseline at the highest concurrency
TARGET_IDLE_THROUGHPUT_RATIO = 0.9  # the same at the lowest (an idle service: one request at a time)
TARGET_AUDIT_COST = 0.10  # 1 - audit on / audit off
TARGET_SHADOW_COST = 0.10  # 1 - shadow / batched, throughput; shadow / batched - 1, p50
THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
VARIANTS = {
    # name: extra environment for `ml-pipelines serve`
    "batched": {"ML_PIPELINES_AUDIT": "on", "ML_PIPELINES_SERVING": ""},
    "batched_no_audit": {"ML_PIPELINES_AUDIT": "off", "ML_PIPELINES_SERVING": ""},
    "unbatched": {"ML_PIPELINES_AUDIT": "on", "ML_PIPELINES_SERVING": json.dumps({"batchable": False})},
    "shadow": {"ML_PIPELINES_AUDIT": "on", "ML_PIPELINES_SERVING": json.dumps({"shadow": True})},
}
INPUTS = ["income", "age", "employment_years", "debt_ratio", "credit_lines", "purpose", "home_ownership"]


def spec(c: float = 1.0):
    """The served classifier; `c` (LogisticRegression's C) tells two versions apart."""
    from ml_pipelines_tests.specs import make_spec

    return make_spec(
        name=PIPELINE,
        task="classification",
        target="defaulted",
        source={"kind": "synthetic", "generator": "ml_pipelines.datasets.credit:generate",
                "params": {"rows": TRAIN_ROWS, "seed": 7}},
        schema={
            "columns": {
                "income": {"type": "float", "min": 0},
                "age": {"type": "int", "min": 18, "max": 100},
                "purpose": {"type": "category", "values": ["car", "home", "education", "other"]},
                "home_ownership": {"type": "category", "values": ["rent", "own", "mortgage"]},
                "defaulted": {"type": "int", "values": [0, 1]},
            },
            "nullable": ["income"],
        },
        features={"numeric": ["income", "age", "employment_years", "debt_ratio", "credit_lines"],
                  "categorical": ["purpose", "home_ownership"], "split": {"test_size": 0.25, "seed": 7}},
        models=[{"name": "logreg", "estimator": "sklearn.linear_model.LogisticRegression",
                 "params": {"max_iter": 300, "C": c}}],
        selection={"cv_folds": 2},
        # the second version always becomes champion (the first is the shadow variant's challenger)
        evaluation={"metrics": ["roc_auc"], "bootstrap_samples": 10, "gate": {"min": 0.55, "max_regression": 1.0}},
    )


def request_bodies(n: int = 256) -> list[bytes]:
    """One-record request bodies from the generator, missing incomes included."""
    from ml_pipelines.datasets.credit import generate

    frame = generate(rows=n, seed=2024)[INPUTS]
    bodies = []
    for row in json.loads(frame.to_json(orient="records")):
        row = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        bodies.append(json.dumps({"records": [row]}).encode())
    return bodies


# ---------------------------------------------------------------- the client


class HTTPConnection:
    """Just enough HTTP/1.1 for POST /predict over one keep-alive connection."""

    def __init__(self, port: int):
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {HOST}:{self.port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        try:
            status_line = await self.reader.readline()
            if not status_line:
                raise ConnectionError("server closed the connection")
            status = int(status_line.split()[1])
            length, chunked, close = None, False, False
            while (line := await self.reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                name, value = name.strip().lower(), value.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "transfer-encoding" and "chunked" in value:
                    chunked = True
                elif name == "connection" and value == "close":
                    close = True
            if chunked:
                payload = b""
                while (size := int((await self.reader.readline()).strip(), 16)) > 0:
                    payload += await self.reader.readexactly(size + 2)
                await self.reader.readline()
            else:
                payload = await self.reader.readexactly(length or 0)
        except BaseException:
            await self.close()
            raise
        if close:
            await self.close()
        return status, payload

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
        self.reader = self.writer = None


@dataclass
class Cell:
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def drive(port: int, bodies: list[bytes], concurrency: int, seconds: float, max_requests: int) -> Cell:
    """`concurrency` callers, each on its own connection, until `seconds` pass or `max_requests` are sent."""
    cell = Cell()
    source = cycle(bodies)
    started = time.perf_counter()
    deadline = started + seconds

    async def caller() -> None:
        connection = HTTPConnection(port)
        try:
            while time.perf_counter() < deadline and cell.requests + cell.errors < max_requests:
                body = next(source)
                sent = time.perf_counter()
                try:
                    status, payload = await connection.post("/predict", body)
                except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError) as exc:
                    cell.errors += 1
                    cell.error_samples.append(f"{type(exc).__name__}: {exc}"[:200])
                    continue
                if status == 200 and b'"predictions"' in payload:
                    cell.requests += 1
                    cell.latencies.append(time.perf_counter() - sent)
                else:
                    cell.errors += 1
                    cell.error_samples.append(f"HTTP {status}: {payload[:160]!r}")
        finally:
            await connection.close()

    await asyncio.gather(*(caller() for _ in range(concurrency)))
    cell.seconds = time.perf_counter() - started
    return cell


# ---------------------------------------------------------------- the servers


@dataclass
class Target:
    name: str
    server: Any  # ServerProcess
    port: int

    def cpu_by_role(self) -> dict[str, float]:
        """CPU seconds (user + system) so far of each of the server's processes, by role."""
        import psutil

        roles: dict[str, float] = {}
        for proc in self.server.processes():
            try:
                cmdline = " ".join(proc.cmdline())
                times = proc.cpu_times()
            except psutil.Error:
                continue
            if f"{PIPELINE}_predictor" in cmdline:
                role = "predictor"
            elif f"{PIPELINE}_service" in cmdline:
                role = "gateway"
            elif proc.pid == self.server.pid:
                role = "main"
            else:
                role = "other"
            roles[role] = roles.get(role, 0.0) + times.user + times.system
        return roles


def start_targets(root: Path, names: list[str], log_dir: Path) -> dict[str, Target]:
    from ml_pipelines.spec import trusted_roots
    from ml_pipelines_tests.servers import REPO_ROOT, free_port, start_server, venv_executable, wait_for_url

    common = {
        "ML_PIPELINES_HOME": str(root), "BENTOML_HOME": str(root / "bentoml"), "ML_PIPELINES_API_KEYS": "",
        "ML_PIPELINES_WATCH_SECONDS": "2", **THREAD_ENV,
    }
    targets: dict[str, Target] = {}
    for name in names:
        port = free_port()
        if name == "baseline":
            command = [venv_executable("python"), "-m", "uvicorn", "bench._serving_baseline:app",
                       "--host", HOST, "--port", str(port)]
            env = {**common, "BENCH_PIPELINE": PIPELINE, "BENCH_TRUSTED_ROOTS": ",".join(trusted_roots(spec()))}
        else:
            command = [venv_executable("ml-pipelines"), "serve", PIPELINE, "--host", HOST, "--port", str(port)]
            env = {**common, **VARIANTS[name]}
        targets[name] = Target(name, start_server(name, command, log_path=log_dir / f"{name}.log",
                                                  cwd=REPO_ROOT, env=env), port)
    for target in targets.values():
        wait_for_url(f"http://{HOST}:{target.port}/readyz", server=target.server, timeout=300)
    return targets


def stop_targets(targets: dict[str, Target]) -> None:
    from ml_pipelines_tests.servers import stop_server

    for target in targets.values():
        try:
            stop_server(target.server)
        except AssertionError as exc:
            print(f"warning: {exc}")


# ---------------------------------------------------------------- the run


def round_order(names: list[str], round_index: int) -> list[str]:
    """The servers' order in one round: rotating, with audit on and off always side by side
    (alternating which goes first), so their per-round ratio compares like with like."""
    pair = ["batched", "batched_no_audit", "shadow"]
    if round_index % 2:
        pair.reverse()
    groups = [[name] for name in names if name not in pair]
    groups.insert(1, [name for name in pair if name in names])
    shift = round_index % len(groups)
    return [name for group in groups[shift:] + groups[:shift] for name in group]


def measure(targets: dict[str, Target], bodies: list[bytes], levels: list[int], seconds: float, rounds: int,
            max_requests: int, warmup_seconds: float) -> dict[tuple[str, int], list[Cell]]:
    cells: dict[tuple[str, int], list[Cell]] = {}
    names = list(targets)
    for target in targets.values():  # BentoML's batching dispatcher trains on its first calls
        asyncio.run(drive(target.port, bodies, levels[0], warmup_seconds * 2, 10**9))
    # concurrency rises once: BentoML's dispatcher re-fits its batching wait at most every 5 s, so
    # going back from 64 callers to 1 would measure the wait it learned under load
    for concurrency in levels:
        for round_index in range(rounds):
            order = round_order(names, round_index)
            for name in order:
                target = targets[name]
                asyncio.run(drive(target.port, bodies, concurrency, warmup_seconds, 10**9))
                before = target.cpu_by_role()
                cell = asyncio.run(drive(target.port, bodies, concurrency, seconds, max_requests))
                after = target.cpu_by_role()
                cell.cpu_seconds = {role: after.get(role, 0.0) - before.get(role, 0.0) for role in after}
                cells.setdefault((name, concurrency), []).append(cell)
                print(f"  round {round_index + 1} c={concurrency:<3} {name:<17} {cell.throughput:8.1f} req/s"
                      f"  p50 {cell.percentile(0.5) * 1000:7.1f} ms  p99 {cell.percentile(0.99) * 1000:7.1f} ms"
                      f"  errors {cell.errors}", flush=True)
    return cells


def summarize(cells: dict[tuple[str, int], list[Cell]], levels: list[int]) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {}
    for (name, concurrency), runs in cells.items():
        requests = sum(c.requests for c in runs)
        cpu: dict[str, float] = {}
        for c in runs:
            for role, seconds in c.cpu_seconds.items():
                cpu[role] = cpu.get(role, 0.0) + seconds
        rows[f"{name}@{concurrency}"] = {
            "server": name,
            "concurrency": concurrency,
            "throughput_rps": median([c.throughput for c in runs]),
            "p50_ms": median([c.percentile(0.5) * 1000 for c in runs]),
            "p99_ms": median([c.percentile(0.99) * 1000 for c in runs]),
            "requests": requests,
            "errors": sum(c.errors for c in runs),
            "error_samples": [s for c in runs for s in c.error_samples][:5],
            "rounds": [round(c.throughput, 2) for c in runs],
            "cpu_ms_per_request": {role: 1000 * s / requests for role, s in sorted(cpu.items())} if requests else {},
        }
    for row in rows.values():
        row["cpu_ms_per_request_total"] = sum(row["cpu_ms_per_request"].values())
    for (name, concurrency), runs in cells.items():
        # the median of per-round ratios: servers measured side by side share the machine's load then
        base_runs = cells[("baseline", concurrency)]
        rows[f"{name}@{concurrency}"]["throughput_vs_baseline_paired"] = median(
            [r.throughput / b.throughput for r, b in zip(runs, base_runs) if b.throughput]
        )
    for row in rows.values():
        base = rows[f"baseline@{row['concurrency']}"]
        # contention-proof: a multi-process server gets more of a busy machine than the one-process baseline
        row["cpu_per_request_vs_baseline"] = (
            row["cpu_ms_per_request_total"] / base["cpu_ms_per_request_total"]
            if base["cpu_ms_per_request_total"] else None
        )
        row["throughput_vs_baseline"] = row["throughput_rps"] / base["throughput_rps"] if base["throughput_rps"] else None
        row["p50_vs_baseline"] = row["p50_ms"] / base["p50_ms"] if base["p50_ms"] else None
        row["p99_vs_baseline"] = row["p99_ms"] / base["p99_ms"] if base["p99_ms"] else None
    top = max(levels)
    # per round, audit on and off ran back to back; the median of those paired costs
    audit_cost = {
        c: median([1 - on.throughput / off.throughput
                   for on, off in zip(cells[("batched", c)], cells[("batched_no_audit", c)]) if off.throughput])
        for c in levels
    }
    # the same from the servers' CPU per request: steadier than throughput on a shared machine
    cpu = {key: row["cpu_ms_per_request_total"] for key, row in rows.items()}
    audit_cpu_cost = {c: 1 - cpu[f"batched_no_audit@{c}"] / cpu[f"batched@{c}"] for c in levels}
    return {
        "rows": rows,
        "audit_cost": {str(c): v for c, v in audit_cost.items()},
        "audit_cpu_cost": {str(c): v for c, v in audit_cpu_cost.items()},
        "targets": _targets(rows, audit_cost, shadow_cost(cells, top), min(levels), top),
    }


def _targets(rows: dict[str, dict[str, Any]], audit_cost: dict[int, float], shadow: dict[str, float],
             low: int, top: int) -> dict[str, dict[str, Any]]:
    """Each target with its value and whether it is met, at the lowest and highest concurrency."""
    idle, busy = (rows[f"batched@{c}"]["throughput_vs_baseline_paired"] for c in (low, top))
    return {
        f"batched_vs_baseline_throughput_at_c{low}": {
            "value": idle, "target": f">= {TARGET_IDLE_THROUGHPUT_RATIO}", "met": idle >= TARGET_IDLE_THROUGHPUT_RATIO,
        },
        f"batched_vs_baseline_throughput_at_c{top}": {
            "value": busy, "target": f">= {TARGET_THROUGHPUT_RATIO}", "met": busy >= TARGET_THROUGHPUT_RATIO,
        },
        f"audit_cost_at_c{top}": {
            "value": audit_cost[top], "target": f"<= {TARGET_AUDIT_COST}", "met": audit_cost[top] <= TARGET_AUDIT_COST,
        },
        f"shadow_throughput_cost_at_c{top}": {
            "value": shadow["throughput"], "target": f"<= {TARGET_SHADOW_COST}",
            "met": shadow["throughput"] <= TARGET_SHADOW_COST,
        },
        f"shadow_p50_cost_at_c{top}": {
            "value": shadow["p50"], "target": f"<= {TARGET_SHADOW_COST}", "met": shadow["p50"] <= TARGET_SHADOW_COST,
        },
        "zero_errors": {"value": sum(r["errors"] for r in rows.values()), "target": "0",
                        "met": all(r["errors"] == 0 for r in rows.values())},
    }


def shadow_coverage(target: Target, audit_root: Path) -> dict[str, int]:
    """Records the shadow server answered and audited against challenger scores its processes logged
    (files are per process: <host>-<pid>.jsonl), so a cheap shadow is also shown to be a working one."""
    from ml_pipelines.serving.runtime import ShadowScorer

    time.sleep(2 * ShadowScorer.SHADOW_BATCH_SECONDS + 1)  # the last gathered rows are scored and written
    pids = {role: {p.pid for p in target.server.processes() if role in " ".join(p.cmdline())}
            for role in (f"{PIPELINE}_service", f"{PIPELINE}_predictor")}
    counts = {"served": 0, "shadowed": 0}
    for path in audit_root.glob(f"{PIPELINE}/*/*.jsonl"):
        pid = int(path.stem.rsplit("-", 1)[1])
        with path.open() as handle:
            lines = [json.loads(line) for line in handle if line.endswith("\n")]
        if pid in pids[f"{PIPELINE}_service"]:
            counts["served"] += sum(1 for r in lines if not r.get("shadow"))
        # the process that scored a request shadow-scores it: the gateway (idle) or the predictor (under load)
        if pid in pids[f"{PIPELINE}_service"] | pids[f"{PIPELINE}_predictor"]:
            counts["shadowed"] += sum(1 for r in lines if r.get("shadow"))
    return counts


def shadow_cost(cells: dict[tuple[str, int], list[Cell]], concurrency: int) -> dict[str, float]:
    """What shadow scoring costs the batched service: medians of back-to-back pairs per round."""
    pairs = list(zip(cells[("shadow", concurrency)], cells[("batched", concurrency)]))
    return {
        "throughput": median([1 - s.throughput / b.throughput for s, b in pairs if b.throughput]),
        "p50": median([s.percentile(0.5) / b.percentile(0.5) - 1 for s, b in pairs if b.percentile(0.5)]),
    }


def print_summary(summary: dict[str, Any], levels: list[int]) -> None:
    rows = summary["rows"]
    order = ["baseline", *VARIANTS]
    table = []
    for concurrency in levels:
        for name in order:
            row = rows[f"{name}@{concurrency}"]
            cpu = row["cpu_ms_per_request"]
            table.append([
                concurrency, name, row["throughput_rps"], row["throughput_vs_baseline_paired"], row["p50_ms"],
                row["p50_vs_baseline"], row["p99_ms"], row["p99_vs_baseline"], row["errors"],
                row["cpu_per_request_vs_baseline"],
                " ".join(f"{k}={v:.1f}" for k, v in cpu.items() if v >= 0.05),
            ])
    print_table(
        "POST /predict, one record per request (figures: medians over rounds; x base: / baseline at the same"
        " concurrency, req/s as the median of per-round ratios)",
        ["c", "server", "req/s", "x base", "p50 ms", "x base", "p99 ms", "x base", "errors", "CPU x base",
         "server CPU ms/request"],
        table,
    )
    print("\naudit cost, batched (1 - throughput audit on / audit off, median of back-to-back pairs): "
          + ", ".join(f"c={c}: {v:+.1%}" for c, v in summary["audit_cost"].items()))
    print("audit cost, batched (share of server CPU per request spent on the audit): "
          + ", ".join(f"c={c}: {v:+.1%}" for c, v in summary["audit_cpu_cost"].items()))
    top = max(levels)
    print(f"shadow cost at c={top} (median of back-to-back pairs with batched): "
          f"throughput {summary['targets'][f'shadow_throughput_cost_at_c{top}']['value']:+.1%}, "
          f"p50 latency {summary['targets'][f'shadow_p50_cost_at_c{top}']['value']:+.1%}")
    for name, target in summary["targets"].items():
        value = target["value"]
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        print(f"target {name}: {shown} ({target['target']}) {'met' if target['met'] else 'MISSED'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="measured seconds per cell and round")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each cell")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--max-requests", type=int, default=5000, help="bound on requests per cell and round")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--keep", action="store_true", help="keep the temporary platform root and logs")
    args = parser.parse_args(argv)
    for name, value in THREAD_ENV.items():
        os.environ.setdefault(name, value)

    from ml_pipelines_tests.helpers import materialize

    root = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    targets: dict[str, Target] = {}
    try:
        started = time.perf_counter()
        older = materialize(spec(0.02), root / "platform")  # becomes the challenger, for the shadow variant
        result = materialize(spec(), root / "platform")
        if not (older.success and result.success):
            raise SystemExit(f"training failed: {older.step_errors() + result.step_errors()}")
        version = result.registry.get_alias(PIPELINE, "champion")
        challenger = older.registry.list_versions(PIPELINE)[0].version
        result.registry.set_alias(PIPELINE, "challenger", challenger, actor="bench", reason="shadow variant")
        print(f"trained {PIPELINE} {version} in {time.perf_counter() - started:.0f}s; starting servers")
        started = time.perf_counter()
        targets = start_targets(root / "platform", ["baseline", *VARIANTS], root / "logs")
        print(f"servers ready in {time.perf_counter() - started:.0f}s")
        cells = measure(targets, request_bodies(), args.concurrency, args.seconds, args.rounds, args.max_requests,
                        args.warmup)
        coverage = shadow_coverage(targets["shadow"], root / "platform" / "audit")
    finally:
        stop_targets(targets)
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

    summary = summarize(cells, args.concurrency)
    summary["shadow_coverage"] = coverage
    summary["targets"]["every_shadow_request_scored"] = {
        "value": coverage, "target": "shadowed == served > 0",
        "met": coverage["served"] > 0 and coverage["shadowed"] == coverage["served"],
    }
    print_summary(summary, args.concurrency)
    path = write_results("serving_throughput", {
        "settings": {"seconds": args.seconds, "warmup": args.warmup, "rounds": args.rounds,
                     "max_requests": args.max_requests, "concurrency": args.concurrency,
                     "records_per_request": 1, "train_rows": TRAIN_ROWS, "model": "LogisticRegression",
                     "threads": THREAD_ENV},
        **summary,
    })
    print(f"\nwrote {path}")
    return 0 if all(t["met"] for t in summary["targets"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
