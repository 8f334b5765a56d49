"""core.child_process: a child started with run_child dies when the process that started it
is killed with SIGKILL (which runs no cleanup), and otherwise behaves like subprocess.run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ml_pipelines.core.child_process import run_child, stream_child
from ml_pipelines_tests import REPO_ROOT

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")

PARENT = textwrap.dedent(
    """
    import sys
    from ml_pipelines.core.child_process import run_child, stream_child
    print("STARTING", flush=True)
    run_child([sys.executable, "-c", "import time; time.sleep(120)"], env={}, timeout=300)
    """
)


def children_of(pid: int) -> list[int]:
    """Live (not zombie) processes whose parent is pid."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, parent = fields[0], int(fields[1])
        if parent == pid and state != "Z":
            found.append(int(stat.parent.name))
    return found


def is_alive(pid: int) -> bool:
    """Running: /proc has it and it is not a zombie waiting for a parent to reap it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_a_child_dies_with_its_parent_on_sigkill(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen([sys.executable, str(script)], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout.readline().strip() == "STARTING"
        assert wait_until(lambda: children_of(parent.pid), 30), "the child never started"
        [child] = children_of(parent.pid)
        # the launcher has exec'd the real command: same pid, the command's own cmdline
        assert wait_until(lambda: b"time.sleep(120)" in Path(f"/proc/{child}/cmdline").read_bytes(), 10)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        assert wait_until(lambda: not is_alive(child), 5), f"child {child} outlived its killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def test_run_child_returns_what_the_command_did(tmp_path):
    done = run_child(
        [sys.executable, "-c", "import os, sys; print(os.environ['GREETING']); sys.exit(3)"],
        env={"GREETING": "hello"}, timeout=60, cwd=tmp_path,
    )
    assert (done.returncode, done.stdout) == (3, "hello\n")


def test_a_child_that_runs_too_long_is_killed():
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        run_child([sys.executable, "-c", "import time; time.sleep(60)"], env={}, timeout=1)
    assert time.monotonic() - started < 30


def test_stream_child_hands_over_each_line_as_it_is_written(tmp_path):
    """The child waits, after its first line, for a file that only on_line creates: with output
    handed over at exit (as run_child does) it would wait until the timeout."""
    go = tmp_path / "go"
    child = textwrap.dedent(f"""
        import os, sys, time
        print("first")
        print("to stderr", file=sys.stderr)
        while not os.path.exists({str(go)!r}):
            time.sleep(0.01)
        print("second")
        sys.exit(2)
    """)
    seen: list[str] = []

    def on_line(line: str) -> None:
        seen.append(line)
        if line == "first":
            go.touch()

    returncode, lines = stream_child([sys.executable, "-c", child], env={}, timeout=60, on_line=on_line)
    assert (returncode, lines, seen) == (2, ["first", "to stderr", "second"], ["first", "to stderr", "second"])
    with pytest.raises(subprocess.TimeoutExpired):
        stream_child([sys.executable, "-c", "import time; time.sleep(60)"], env={}, timeout=1, on_line=seen.append)
