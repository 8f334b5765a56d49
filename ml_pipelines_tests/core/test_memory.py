"""core.memory: within reused_freed_memory, a freed 80 MB block is reused without faulting in
fresh pages, and at its end the free memory goes back to the system and malloc maps large
blocks again. Measured in a child process: malloc's options are process-wide, and this one's
depend on the tests before."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = """
import json, resource
import numpy as np, psutil
from ml_pipelines.core import memory

def faults(rounds):  # minor page faults while making and freeing `rounds` 80 MB arrays
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(rounds):
        block = np.ones(10_000_000)
        del block
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

def rss():
    return psutil.Process().memory_info().rss

figures = {"default": faults(4), "rss_start": rss()}
with memory.reused_freed_memory():
    faults(1)  # the heap grows once
    figures["reused"] = faults(4)
    held = [np.ones(10_000_000) for _ in range(5)]  # 400 MB, then freed: kept in the heap
    del held
    figures["rss_kept"] = rss()
figures["rss_after"] = rss()
figures["after"] = faults(4)
print(json.dumps(figures))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc options: Linux only")
def test_freed_blocks_are_reused_without_new_page_faults_and_given_back_at_the_end():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
    figures = json.loads(out)
    # by default each 80 MB array is mapped afresh and faulted in again: at least 40 faults
    # (2 MB transparent huge pages), hundreds with 4 KB pages (this machine: about 600)
    assert figures["default"] >= 4 * 40, figures
    assert figures["reused"] < figures["default"] / 10, figures
    mib = 1 << 20
    assert figures["rss_kept"] - figures["rss_start"] > 300 * mib, figures  # freed, yet kept for reuse
    assert figures["rss_after"] - figures["rss_start"] < 50 * mib, figures  # given back at the end
    assert figures["after"] > figures["default"] / 2, figures  # and large blocks are mapped afresh again


def test_outside_glibc_both_calls_do_nothing(monkeypatch):
    from ml_pipelines.core import memory

    monkeypatch.setattr(memory, "_glibc", lambda: None)
    assert memory.keep_freed_memory() is False
    assert memory.release_freed_memory() is False
    with memory.reused_freed_memory():
        pass


def _advised_huge(address: int) -> bool:
    """Whether the mapping holding address carries MADV_HUGEPAGE (VmFlags "hg" in smaps)."""
    mapping = None
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split(maxsplit=1)[0]
        if "-" in head and not head.endswith(":"):
            start, end = (int(bound, 16) for bound in head.split("-"))
            mapping = start <= address < end
        elif head == "VmFlags:" and mapping:
            return "hg" in line.split()
    raise AssertionError(f"no mapping holds {address:#x}")


@pytest.mark.skipif(not Path("/sys/kernel/mm/transparent_hugepage").is_dir(),
                    reason="a kernel without transparent huge pages refuses the advice")
def test_within_small_pages_numpy_advises_no_huge_pages_and_its_setting_comes_back_after():
    import numpy as np
    from numpy._core.multiarray import _set_madvise_hugepage

    from ml_pipelines.core import memory

    original = _set_madvise_hugepage(True)
    try:
        for before in (True, False):
            _set_madvise_hugepage(before)
            with memory.small_pages_for_arrays():
                assert _set_madvise_hugepage(False) is False  # returns the setting it replaces
                inside = np.ones(10_000_000)  # 80 MB: numpy advises from 4 MiB up
                assert not _advised_huge(inside.ctypes.data + 8192)
                with memory.step_memory(reuse_freed=False):
                    assert _set_madvise_hugepage(False) is False
                assert _set_madvise_hugepage(False) is False  # a nested step leaves it off
            assert _set_madvise_hugepage(before) is before
        _set_madvise_hugepage(True)
        outside = np.ones(10_000_000)
        assert _advised_huge(outside.ctypes.data + 8192)  # the probe sees advice where there is some
    finally:
        _set_madvise_hugepage(original)
