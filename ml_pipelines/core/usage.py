"""What one step used: wall time, CPU seconds, CPU utilisation, peak resident memory and,
where CUDA is present, GPU utilisation and peak GPU memory. Pure: psutil, optionally
NVML (nvidia-ml-py) and torch's own CUDA counters; no dagster.

    with UsageSampler() as sampler:
        do_the_work()
    usage = sampler.usage  # a StepUsage; usage.figures() -> {"usage/wall_s": ..., ...}

Several steps may share one process (Dagster's in_process executor), so nothing here
reads a lifetime figure of the process:

- CPU seconds are the step's delta: this process (all threads), the child processes it
  waited for (the bento build, via the process's children_user/children_system) and the
  descendants still alive when it ends (counted from where they were when it began).
- Peak memory is the largest resident set observed during the step: a sampler thread
  reads the RSS of this process and of its live descendants every `interval_s`; on Linux
  the kernel's own high-water mark (VmHWM), reset when the step starts (/proc/self/clear_refs),
  also catches this process's spikes shorter than one interval.
- The busiest second (cpu_peak_cores) is the largest CPU-seconds-per-second over the
  windows of about one second between the slower samples (descendants, GPU).
- GPU: NVML's per-process memory for this process and its descendants, and the
  utilisation of the devices they hold (device-wide: work of another process on the same
  GPU counts too); torch's peak reserved memory (reset at the start) when this process
  initialised CUDA. No GPU on the machine: the GPU figures are None (no keys).
"""

from __future__ import annotations

import functools
import re
import sys
import threading
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, Self

import psutil

MIB = 1024 * 1024
DEFAULT_INTERVAL_S = 0.1  # RSS of this process and its known descendants
SLOW_EVERY = 10  # every 10th sample (about a second): the descendants' list, CPU window, GPU
_CLEAR_REFS = "/proc/self/clear_refs"
_STATUS = "/proc/self/status"
_VMHWM = re.compile(r"^VmHWM:\s+(\d+)\s+kB", re.MULTILINE)

# the metadata keys (numbers, so Dagster's Plots tab charts them across materializations)
WALL_S = "usage/wall_s"
CPU_S = "usage/cpu_s"
CPU_UTILISATION_PCT = "usage/cpu_utilisation_pct"  # CPU seconds per wall second x 100: 100 = one core busy
CPU_PEAK_CORES = "usage/cpu_peak_cores"
PEAK_RSS_MIB = "usage/peak_rss_mib"
GPUS = "usage/gpus"  # devices the step held memory on
GPU_UTILISATION_PCT = "usage/gpu_utilisation_pct"
GPU_PEAK_MEMORY_MIB = "usage/gpu_peak_memory_mib"
# what the step's Kubernetes pod requested (its op's dagster-k8s/config tag), beside what it used
REQUESTED_CPU_CORES = "usage/requested_cpu_cores"
REQUESTED_MEMORY_MIB = "usage/requested_memory_mib"
REQUESTED_GPUS = "usage/requested_gpus"
OWNERS = "usage/owners"  # text: who the step's cost is charged to (the asset's owners, comma-separated)

_K8S_SUFFIX = {
    "": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}
_QUANTITY = re.compile(r"^(?P<number>[0-9]+(\.[0-9]*)?|\.[0-9]+)(?P<suffix>[eE][+-]?[0-9]+|Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?$")


@dataclass(frozen=True)
class StepUsage:
    wall_s: float
    cpu_s: float
    cpu_peak_cores: float
    peak_rss_bytes: int
    gpus: int | None = None  # None: no GPU on this machine (and no GPU keys)
    gpu_utilisation_pct: float | None = None  # None with GPUs: NVML is not there to say
    gpu_peak_memory_bytes: int | None = None

    @property
    def cpu_utilisation_pct(self) -> float:
        return 100.0 * self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0

    def figures(self) -> dict[str, float | int]:
        """The metadata entries: metric key -> number; GPU keys only where there is a GPU."""
        figures: dict[str, float | int] = {
            WALL_S: round(self.wall_s, 3),
            CPU_S: round(self.cpu_s, 3),
            CPU_UTILISATION_PCT: round(self.cpu_utilisation_pct, 1),
            CPU_PEAK_CORES: round(self.cpu_peak_cores, 2),
            PEAK_RSS_MIB: round(self.peak_rss_bytes / MIB, 1),
        }
        if self.gpus is not None:
            figures[GPUS] = self.gpus
            if self.gpu_utilisation_pct is not None:
                figures[GPU_UTILISATION_PCT] = round(self.gpu_utilisation_pct, 1)
            if self.gpu_peak_memory_bytes is not None:
                figures[GPU_PEAK_MEMORY_MIB] = round(self.gpu_peak_memory_bytes / MIB, 1)
        return figures


# ---------------------------------------------------------------- Kubernetes quantities


def parse_quantity(text: str | float) -> float:
    """A Kubernetes quantity as a plain number: "500m" -> 0.5, "4Gi" -> 4294967296, "1e9" -> 1e9."""
    match = _QUANTITY.match(str(text).strip())
    if match is None:
        raise ValueError(f"{text!r} is not a Kubernetes quantity (like 2, 500m, 4Gi, 512Mi)")
    suffix = match["suffix"] or ""
    if suffix[:1] in ("e", "E") and len(suffix) > 1:
        return float(match["number"] + suffix)
    return float(match["number"]) * _K8S_SUFFIX[suffix]


def requested_figures(requests: Mapping[str, Any]) -> dict[str, float | int]:
    """A container's `resources.requests` ({cpu, memory, nvidia.com/gpu}) as metadata entries."""
    figures: dict[str, float | int] = {}
    if requests.get("cpu") is not None:
        figures[REQUESTED_CPU_CORES] = round(parse_quantity(requests["cpu"]), 3)
    if requests.get("memory") is not None:
        figures[REQUESTED_MEMORY_MIB] = round(parse_quantity(requests["memory"]) / MIB, 1)
    figures[REQUESTED_GPUS] = int(parse_quantity(requests.get("nvidia.com/gpu", 0)))
    return figures


# ---------------------------------------------------------------- GPU probes


class GpuProbe(Protocol):
    """What the sampler asks of a GPU library; a fake one stands in for it in tests."""

    def sample(self, pids: Collection[int]) -> tuple[int, int, float]:
        """(bytes of GPU memory the pids hold, devices they hold memory on, mean utilisation % of those)."""


class NvmlProbe:
    """NVML (nvidia-ml-py): per-process GPU memory and device utilisation."""

    def __init__(self, nvml: Any, handles: list[Any]):
        self._nvml, self._handles = nvml, handles

    def sample(self, pids: Collection[int]) -> tuple[int, int, float]:
        memory, devices, utilisation = 0, 0, 0.0
        for handle in self._handles:
            try:
                held = sum(p.usedGpuMemory or 0 for p in self._nvml.nvmlDeviceGetComputeRunningProcesses(handle)
                           if p.pid in pids)
                if held:
                    memory, devices = memory + held, devices + 1
                    utilisation += self._nvml.nvmlDeviceGetUtilizationRates(handle).gpu
            except self._nvml.NVMLError:
                continue
        return memory, devices, utilisation / devices if devices else 0.0


@functools.cache
def nvml_probe() -> NvmlProbe | None:
    """The machine's GPUs through NVML, initialised once per process; None without NVML or GPUs."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
    except pynvml.NVMLError:  # no driver, no device: no GPU figures
        return None
    return NvmlProbe(pynvml, handles) if handles else None


def _torch_cuda() -> Any:
    """torch.cuda when this process has already initialised CUDA; importing torch is not the sampler's
    to do (seconds), and a process that never initialised CUDA has no torch GPU figures."""
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    return cuda if cuda is not None and cuda.is_initialized() else None


def _torch_reset_peaks() -> None:
    cuda = _torch_cuda()
    if cuda is not None:
        for device in range(cuda.device_count()):
            cuda.reset_peak_memory_stats(device)


def _torch_peaks() -> tuple[int, int] | None:
    """(peak bytes reserved by torch since the reset, devices with any) or None."""
    cuda = _torch_cuda()
    if cuda is None:
        return None
    peaks = [cuda.max_memory_reserved(device) for device in range(cuda.device_count())]
    return sum(peaks), sum(1 for p in peaks if p)


# ---------------------------------------------------------------- the kernel's high-water mark


def _reset_kernel_peak() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux 4.0+); False where that cannot be done."""
    try:
        with open(_CLEAR_REFS, "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _kernel_peak() -> int:
    try:
        with open(_STATUS) as handle:
            match = _VMHWM.search(handle.read())
    except OSError:
        return 0
    return int(match[1]) * 1024 if match else 0


# ---------------------------------------------------------------- the sampler


class UsageSampler:
    """Measures one step from start() to stop() (or as a context manager); see the module docstring."""

    def __init__(self, interval_s: float = DEFAULT_INTERVAL_S, *, gpu: GpuProbe | None | str = "auto",
                 slow_every: int = SLOW_EVERY):
        if interval_s <= 0:
            raise ValueError(f"interval_s must be more than 0, got {interval_s}")
        self.interval_s, self.slow_every = interval_s, slow_every
        self._gpu = nvml_probe() if gpu == "auto" else gpu
        self._process = psutil.Process()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.usage: StepUsage | None = None

    # ------------------------------------------------------------ life cycle

    def start(self) -> Self:
        _torch_reset_peaks()
        self._kernel_peak_valid = _reset_kernel_peak()
        self._children: list[psutil.Process] = []
        self._child_base: dict[int, float] = {}
        self._peak_rss, self._peak_cores = 0, 0.0
        self._gpu_memory, self._gpu_devices, self._gpu_utilisation = 0, 0, []
        self._started = time.perf_counter()
        self._refresh_children(baseline=True)
        self._cpu_at_start = self._window_cpu = self._cpu_total()
        self._window_start = self._started
        self._sample_memory()
        self._thread = threading.Thread(target=self._run, name="ml_pipelines-usage", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> StepUsage:
        """End the measurement (idempotent) and return what the step used."""
        if self.usage is not None:
            return self.usage
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            self._slow_sample()
            wall = time.perf_counter() - self._started
            cpu = max(0.0, self._cpu_total() - self._cpu_at_start)
            peak = max(self._peak_rss, _kernel_peak() if self._kernel_peak_valid else 0)
            self.usage = StepUsage(
                wall_s=wall, cpu_s=cpu, cpu_peak_cores=max(self._peak_cores, cpu / wall if wall > 0 else 0.0),
                peak_rss_bytes=peak, **self._gpu_figures(),
            )
        return self.usage

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------ sampling

    def _run(self) -> None:
        tick = 0
        while not self._stopped.wait(self.interval_s):
            tick += 1
            with self._lock:
                if tick % self.slow_every == 0:
                    self._slow_sample()
                else:
                    self._sample_memory()

    def _slow_sample(self) -> None:
        self._refresh_children()
        self._sample_memory()
        now, cpu = time.perf_counter(), self._cpu_total()
        # a window shorter than half the usual one (the last, cut by stop) is too noisy to be a peak
        if now - self._window_start >= 0.5 * self.interval_s * self.slow_every:
            self._peak_cores = max(self._peak_cores, (cpu - self._window_cpu) / (now - self._window_start))
            self._window_start, self._window_cpu = now, cpu
        if self._gpu is not None:
            memory, devices, utilisation = self._gpu.sample({self._process.pid, *(c.pid for c in self._children)})
            self._gpu_memory = max(self._gpu_memory, memory)
            self._gpu_devices = max(self._gpu_devices, devices)
            self._gpu_utilisation.append(utilisation)

    def _sample_memory(self) -> None:
        rss = self._process.memory_info().rss
        for child in self._children:
            try:
                rss += child.memory_info().rss
            except psutil.Error:
                continue
        self._peak_rss = max(self._peak_rss, rss)

    def _refresh_children(self, baseline: bool = False) -> None:
        try:
            self._children = self._process.children(recursive=True)
        except psutil.Error:
            self._children = []
        if baseline:  # descendants from before the step (a worker pool) count from here
            self._child_base = {c.pid: _cpu_of(c) for c in self._children}

    def _cpu_total(self) -> float:
        """CPU seconds of this process, of the children it waited for and of its live descendants (less
        what those had used when the step started)."""
        own = self._process.cpu_times()
        total = own.user + own.system + own.children_user + own.children_system
        for child in self._children:
            total += max(0.0, _cpu_of(child) - self._child_base.get(child.pid, 0.0))
        return total

    def _gpu_figures(self) -> dict[str, Any]:
        torch_peaks = _torch_peaks()
        if self._gpu is None and torch_peaks is None:
            return {}
        memory, devices = self._gpu_memory, self._gpu_devices
        if torch_peaks is not None:
            memory, devices = max(memory, torch_peaks[0]), max(devices, torch_peaks[1])
        samples = self._gpu_utilisation
        utilisation = sum(samples) / len(samples) if self._gpu is not None and samples else None
        return {"gpus": devices, "gpu_utilisation_pct": utilisation, "gpu_peak_memory_bytes": memory}


def _cpu_of(process: psutil.Process) -> float:
    try:
        times = process.cpu_times()
    except psutil.Error:
        return 0.0
    return times.user + times.system + times.children_user + times.children_system

