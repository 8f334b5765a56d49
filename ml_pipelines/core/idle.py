"""Idle detection for a running step (`resources.<stage>.idle_timeout`): no dagster import.

IdleTracker is the pure part: fed (time, CPU %, GPU %) samples, it says when the step has
stayed below the thresholds for longer than the timeout. IdleWatchdog is a daemon thread
that samples this process (and its children) with psutil, and the GPUs with NVML when
the step asked for one, and calls `on_idle` once with the verdict.

CPU is measured as a share of one core, summed over the process and its children, from
the change in their CPU times between samples: a step that sleeps, waits on a lock or
a socket uses about 0%; a step that computes on one thread about 100%.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import psutil

CPU_IDLE_PERCENT = 5.0  # below this share of one core, the step is idle
GPU_IDLE_PERCENT = 5.0  # and, when it asked for a GPU, below this GPU utilisation
MAX_SAMPLE_INTERVAL_S = 10.0


@dataclass(frozen=True)
class IdleVerdict:
    """The step was idle for `idle_s` seconds (more than `timeout_s`): its mean CPU (and GPU) over that stretch."""

    idle_s: float
    timeout_s: float
    cpu_percent: float
    gpu_percent: float | None

    def reason(self, step: str, setting: str) -> str:
        gpu = (f", GPU {self.gpu_percent:.1f}% (threshold {GPU_IDLE_PERCENT:g}%)"
               if self.gpu_percent is not None else "")
        return (f"step {step} was idle for {self.idle_s:.0f}s: CPU {self.cpu_percent:.1f}% of one core "
                f"(threshold {CPU_IDLE_PERCENT:g}%){gpu}; its limit is {setting} = {self.timeout_s:g}s, "
                "so the step was ended")


@dataclass
class IdleTracker:
    """Decides from samples whether a step has been idle longer than timeout_s."""

    timeout_s: float
    idle_since: float | None = None
    _cpu_sum: float = 0.0
    _gpu_sum: float = 0.0
    _count: int = 0

    def observe(self, start: float, end: float, cpu_percent: float,
                gpu_percent: float | None = None) -> IdleVerdict | None:
        """Record one sample, the mean use over the window [start, end]; the verdict once the idle
        stretch reaches the timeout, else None. `gpu_percent` None: no GPU is watched, CPU alone decides."""
        idle = cpu_percent < CPU_IDLE_PERCENT and (gpu_percent is None or gpu_percent < GPU_IDLE_PERCENT)
        if not idle:
            self.idle_since, self._cpu_sum, self._gpu_sum, self._count = None, 0.0, 0.0, 0
            return None
        if self.idle_since is None:
            self.idle_since = start
        self._cpu_sum += cpu_percent
        self._gpu_sum += gpu_percent or 0.0
        self._count += 1
        idle_s = end - self.idle_since
        if idle_s < self.timeout_s:
            return None
        return IdleVerdict(idle_s, self.timeout_s, self._cpu_sum / self._count,
                           self._gpu_sum / self._count if gpu_percent is not None else None)


def sample_interval(timeout_s: float) -> float:
    """How often to sample: a fifth of the timeout (a verdict comes at most that late), at most 10 s."""
    return max(0.05, min(MAX_SAMPLE_INTERVAL_S, timeout_s / 5))


class ProcessCpu:
    """CPU seconds of a process and all its children, live and reaped, so that the total never drops."""

    def __init__(self, pid: int | None = None):
        self._process = psutil.Process(pid or os.getpid())

    def seconds(self) -> float:
        times = self._process.cpu_times()
        total = times.user + times.system + times.children_user + times.children_system
        for child in self._process.children(recursive=True):
            try:
                child_times = child.cpu_times()
            except psutil.Error:
                continue  # gone between the listing and the read
            total += child_times.user + child_times.system
        return total


def gpu_utilisation() -> Callable[[], float | None]:
    """A probe of the highest utilisation (%) over this machine's GPUs, through NVML
    (nvidia-ml-py); a probe that answers None where there is no NVML or no GPU."""
    try:
        import pynvml

        pynvml.nvmlInit()
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
    except Exception:  # noqa: BLE001 - no driver, no library, no device: the GPU is not watched
        return lambda: None
    if not handles:
        return lambda: None
    return lambda: float(max(pynvml.nvmlDeviceGetUtilizationRates(h).gpu for h in handles))


class IdleWatchdog:
    """A daemon thread that samples this process every `interval_s` and calls `on_idle(verdict)`
    once when the step has been idle longer than `timeout_s`. stop() ends it; after stop()
    returns, on_idle is never called."""

    def __init__(self, timeout_s: float, on_idle: Callable[[IdleVerdict], None], *, watch_gpu: bool = False,
                 interval_s: float | None = None, cpu: Callable[[], float] | None = None,
                 gpu: Callable[[], float | None] | None = None):
        self.tracker = IdleTracker(timeout_s)
        self.verdict: IdleVerdict | None = None
        self._on_idle = on_idle
        self._interval_s = interval_s if interval_s is not None else sample_interval(timeout_s)
        self._cpu = cpu or ProcessCpu().seconds
        self._gpu = (gpu or gpu_utilisation()) if watch_gpu else (lambda: None)
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._watch, name="ml_pipelines idle watchdog", daemon=True)

    def start(self) -> IdleWatchdog:
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._lock:
            self._stopped.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def _watch(self) -> None:
        last_at, last_cpu = time.monotonic(), self._cpu()
        while not self._stopped.wait(self._interval_s):
            at, cpu = time.monotonic(), self._cpu()
            percent = 100.0 * max(0.0, cpu - last_cpu) / max(at - last_at, 1e-6)
            verdict = self.tracker.observe(last_at, at, percent, self._gpu())
            last_at, last_cpu = at, cpu
            if verdict is None:
                continue
            with self._lock:
                if self._stopped.is_set():
                    return
                self.verdict = verdict
                self._on_idle(verdict)
            return
