"""core/idle.py: the idle decision from samples, the watchdog thread, and CPU measured over a
process and its children."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from ml_pipelines.core.idle import IdleTracker, IdleWatchdog, ProcessCpu, sample_interval


def test_an_idle_stretch_that_reaches_the_timeout_gives_a_verdict_with_its_mean_use():
    tracker = IdleTracker(timeout_s=5)
    assert tracker.observe(0, 1, cpu_percent=1.0) is None
    assert tracker.observe(1, 3, cpu_percent=3.0) is None
    verdict = tracker.observe(3, 5, cpu_percent=2.0)
    assert verdict is not None
    assert (verdict.idle_s, verdict.timeout_s, verdict.cpu_percent, verdict.gpu_percent) == (5, 5, 2.0, None)
    reason = verdict.reason("p__raw_data", "resources.ingest.idle_timeout")
    assert reason == ("step p__raw_data was idle for 5s: CPU 2.0% of one core (threshold 5%); its limit is "
                      "resources.ingest.idle_timeout = 5s, so the step was ended")


def test_a_busy_sample_starts_the_stretch_again():
    tracker = IdleTracker(timeout_s=5)
    assert tracker.observe(0, 4, cpu_percent=0.0) is None
    assert tracker.observe(4, 5, cpu_percent=80.0) is None  # busy: not idle any more
    assert tracker.observe(5, 9, cpu_percent=0.0) is None  # only 4 s idle since
    assert tracker.observe(9, 10, cpu_percent=0.0).idle_s == 5


def test_a_busy_gpu_keeps_a_step_with_a_quiet_cpu_alive():
    tracker = IdleTracker(timeout_s=2)
    assert tracker.observe(0, 1, cpu_percent=1.0, gpu_percent=90.0) is None
    assert tracker.observe(1, 3, cpu_percent=1.0, gpu_percent=95.0) is None
    assert tracker.observe(3, 4, cpu_percent=1.0, gpu_percent=0.0) is None
    verdict = tracker.observe(4, 5, cpu_percent=1.0, gpu_percent=2.0)
    assert verdict is not None and (verdict.idle_s, verdict.gpu_percent) == (2, 1.0)
    assert "GPU 1.0% (threshold 5%)" in verdict.reason("s", "resources.train.idle_timeout")


def test_the_sample_interval_is_a_fifth_of_the_timeout_and_at_most_ten_seconds():
    assert sample_interval(5) == 1.0
    assert sample_interval(15 * 60) == 10.0


def test_the_watchdog_calls_back_once_when_the_process_is_idle():
    calls = []
    watchdog = IdleWatchdog(0.1, calls.append, interval_s=0.02, cpu=lambda: 12.0).start()  # CPU time never moves
    deadline = time.monotonic() + 5
    while not calls and time.monotonic() < deadline:
        time.sleep(0.01)
    watchdog.stop()
    assert len(calls) == 1 and calls[0] is watchdog.verdict
    assert calls[0].idle_s >= 0.1 and calls[0].cpu_percent == 0.0


def test_the_watchdog_leaves_a_busy_process_alone_and_is_silent_after_stop():
    calls = []
    clock = threading.Lock()
    spent = [0.0]

    def busy_cpu() -> float:  # one full core: CPU time moves as fast as the wall clock
        with clock:
            spent[0] = time.monotonic()
            return spent[0]

    watchdog = IdleWatchdog(0.05, calls.append, interval_s=0.01, cpu=busy_cpu).start()
    time.sleep(0.3)
    watchdog.stop()
    assert calls == [] and watchdog.verdict is None
    idle = IdleWatchdog(0.05, calls.append, interval_s=0.01, cpu=lambda: 0.0).start()
    idle.stop()
    time.sleep(0.2)
    assert calls == []


@pytest.mark.timeout(60)
def test_process_cpu_counts_a_child_process_that_computes():
    cpu = ProcessCpu()
    before = cpu.seconds()
    spin = "import time\nend = time.process_time() + 1.0\nwhile time.process_time() < end: pass"
    subprocess.run([sys.executable, "-c", spin], check=True)
    assert cpu.seconds() - before >= 0.9
