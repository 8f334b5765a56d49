"""core.usage: the sampler's figures checked against known work (memory allocated, CPU spun, in
this process, in a child it waited for, in a child still running), a step's peak is its own
and not the process's, the GPU figures through a stand-in probe, and Kubernetes quantities."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import psutil
import pytest

from ml_pipelines.core import usage as u
from ml_pipelines.core.usage import StepUsage, UsageSampler, parse_quantity, requested_figures
from ml_pipelines.settings import Settings, SettingsError

MB = 1_000_000
ALLOCATED = 300 * 2**20  # 300 MiB, about 315 MB: "about 300 MB", written so it is resident
SPIN_S = 2.0
# a child that spins SPIN_S seconds of its own CPU time; `then_wait` keeps it alive afterwards
SPIN_CHILD = (
    "import sys, time\n"
    "end = time.process_time() + float(sys.argv[1])\n"
    "while time.process_time() < end: pass\n"
    "print('spun', flush=True)\n"
    "if sys.argv[2] == 'wait': time.sleep(60)\n"
)


def spin(cpu_seconds: float) -> None:
    """Busy this thread for cpu_seconds of its own CPU time (wall time grows with the machine's load)."""
    end = time.thread_time() + cpu_seconds
    while time.thread_time() < end:
        pass


def rss() -> int:
    return psutil.Process().memory_info().rss


def test_a_step_that_allocates_300_mb_reports_a_peak_of_at_least_that_more():
    before = rss()
    with UsageSampler(0.05, gpu=None) as sampler:
        block = np.ones(ALLOCATED // 8)
        time.sleep(0.3)
        del block
    assert sampler.usage.peak_rss_bytes >= before + 300 * MB, (before, sampler.usage)
    assert u.PEAK_RSS_MIB in sampler.usage.figures()


def test_the_peak_is_the_steps_own_not_the_process_lifetimes():
    """Steps share a process under the in_process executor: a small step after a big one reports its own peak."""
    with UsageSampler(0.05, gpu=None) as big:
        block = np.ones(600 * MB // 8)
        time.sleep(0.2)
        del block
    with UsageSampler(0.05, gpu=None) as small:
        time.sleep(0.2)
    assert small.usage.peak_rss_bytes < big.usage.peak_rss_bytes - 400 * MB, (big.usage, small.usage)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the kernel's high-water mark is Linux's")
def test_a_spike_shorter_than_one_sample_is_caught_by_the_kernels_high_water_mark():
    before = rss()
    with UsageSampler(5.0, gpu=None) as sampler:  # no sample falls inside the spike
        block = np.ones(ALLOCATED // 8)
        del block
    assert sampler.usage.peak_rss_bytes >= before + 300 * MB, (before, sampler.usage)


def test_a_step_that_spins_2_s_reports_at_least_1_5_cpu_seconds():
    with UsageSampler(0.05, gpu=None) as sampler:
        spin(SPIN_S)
    usage = sampler.usage
    assert 1.5 <= usage.cpu_s < SPIN_S + 1.0, usage
    assert usage.wall_s >= SPIN_S * 0.95
    assert usage.cpu_peak_cores > 0
    assert usage.figures()[u.CPU_UTILISATION_PCT] == pytest.approx(100 * usage.cpu_s / usage.wall_s, abs=0.1)


def test_cpu_seconds_include_a_child_the_step_waited_for():
    """The bento build runs in a subprocess: its CPU is the step's."""
    with UsageSampler(0.05, gpu=None) as sampler:
        subprocess.run([sys.executable, "-c", SPIN_CHILD, str(SPIN_S), "exit"], check=True, capture_output=True)
    assert sampler.usage.cpu_s >= 1.5, sampler.usage


def test_cpu_seconds_and_memory_include_a_child_still_running_at_the_end():
    sampler = UsageSampler(0.05, gpu=None, slow_every=2).start()
    child = subprocess.Popen([sys.executable, "-c", SPIN_CHILD, str(SPIN_S), "wait"], stdout=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout.readline().strip() == "spun"
        usage = sampler.stop()
        child_rss = psutil.Process(child.pid).memory_info().rss
    finally:
        child.kill()
        child.wait()
    assert usage.cpu_s >= 1.5, usage
    assert usage.peak_rss_bytes >= rss() * 0.9 + child_rss * 0.9, usage


def test_stop_is_idempotent_and_the_thread_ends():
    sampler = UsageSampler(0.01, gpu=None).start()
    first = sampler.stop()
    assert sampler.stop() is first
    assert not any(t.name == "ml_pipelines-usage" and t.is_alive() for t in __import__("threading").enumerate())


class FakeGpu:
    """Stands in for NVML: this process holds 2 GiB on one device busy at 80%, then 3 GiB."""

    def __init__(self):
        self.calls: list[set[int]] = []

    def sample(self, pids):
        self.calls.append(set(pids))
        return (2 if len(self.calls) == 1 else 3) * 2**30, 1, 80.0


def test_gpu_figures_come_from_the_probe_for_this_process():
    probe = FakeGpu()
    with UsageSampler(0.02, gpu=probe, slow_every=2) as sampler:
        time.sleep(0.1)
    usage = sampler.usage
    assert (usage.gpus, usage.gpu_utilisation_pct, usage.gpu_peak_memory_bytes) == (1, 80.0, 3 * 2**30)
    assert all(psutil.Process().pid in pids for pids in probe.calls)
    figures = usage.figures()
    assert (figures[u.GPUS], figures[u.GPU_UTILISATION_PCT], figures[u.GPU_PEAK_MEMORY_MIB]) == (1, 80.0, 3072.0)


def test_no_gpu_no_gpu_keys():
    with UsageSampler(0.02, gpu=None) as sampler:
        pass
    assert sampler.usage.gpus is None
    assert not [key for key in sampler.usage.figures() if "gpu" in key]


def test_figures_are_numbers_and_utilisation_is_per_core():
    usage = StepUsage(wall_s=10.0, cpu_s=15.0, cpu_peak_cores=2.0, peak_rss_bytes=512 * 2**20)
    assert usage.figures() == {
        u.WALL_S: 10.0, u.CPU_S: 15.0, u.CPU_UTILISATION_PCT: 150.0, u.CPU_PEAK_CORES: 2.0, u.PEAK_RSS_MIB: 512.0,
    }


@pytest.mark.parametrize(("text", "value"), [
    ("500m", 0.5), ("2", 2.0), (1.5, 1.5), ("4Gi", 4 * 2**30), ("512Mi", 512 * 2**20), ("1e9", 1e9), ("1k", 1000.0),
])
def test_kubernetes_quantities(text, value):
    assert parse_quantity(text) == value


def test_a_bad_quantity_is_refused_by_name():
    with pytest.raises(ValueError, match="'4GB' is not a Kubernetes quantity"):
        parse_quantity("4GB")


def test_requested_figures_of_a_pod():
    assert requested_figures({"cpu": "500m", "memory": "1Gi"}) == {
        u.REQUESTED_CPU_CORES: 0.5, u.REQUESTED_MEMORY_MIB: 1024.0, u.REQUESTED_GPUS: 0,
    }
    assert requested_figures({"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "1"})[u.REQUESTED_GPUS] == 1


def test_the_sampling_interval_setting():
    assert Settings.from_env({}).usage_interval_s == 0.1
    assert Settings.from_env({"ML_PIPELINES_USAGE_INTERVAL": "0"}).usage_interval_s == 0
    with pytest.raises(SettingsError, match="ML_PIPELINES_USAGE_INTERVAL='-1' must be 0 or more"):
        Settings.from_env({"ML_PIPELINES_USAGE_INTERVAL": "-1"})
    with pytest.raises(ValueError, match="interval_s must be more than 0"):
        UsageSampler(0)
