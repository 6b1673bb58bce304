"""The suite cannot hang: a test past its time limit fails by itself, with its name, and leaves nothing.

Each test runs a small pytest session of its own in a subprocess, with the project's time-limit plugin
(``helpers.time_limits``) and a limit of a few seconds, on test files written here.
"""

from __future__ import annotations

import os
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers.cli import REPO
from helpers.processes import run_bounded

TESTS = Path(__file__).resolve().parent

_FILES = {
    "test_sleeps.py": """
        import time

        def test_sleeps_past_the_limit():
            time.sleep(120)

        def test_quick():
            assert True
    """,
    "test_leaves_a_child.py": """
        import os, sys, time
        from helpers.processes import start

        def test_starts_a_child_then_hangs():
            child = start([sys.executable, "-c", "import time; time.sleep(300)"])
            with open(os.environ["CHILD_PID_FILE"], "w") as f:
                f.write(str(child.pid))
            time.sleep(120)

        def test_the_child_is_gone_before_the_next_test():
            pid = int(open(os.environ["CHILD_PID_FILE"]).read())
            stat = f"/proc/{pid}/stat"
            assert not os.path.exists(stat) or open(stat).read().split(") ")[-1][0] == "Z"  # gone or zombie
    """,
    "test_deaf_to_the_alarm.py": """
        import signal, time

        def test_stuck_where_no_python_runs():
            # SIGALRM blocked: pytest-timeout's handler never runs, as for a thread stuck in C code with
            # the GIL held (the gloo destructor deadlock).
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
            time.sleep(120)

        def test_after_it():
            assert True
    """,
}


def _pytest(tmp_path: Path, test_file: str, *args: str, **env: str):
    folder = tmp_path / "suite"
    folder.mkdir(exist_ok=True)
    (folder / test_file).write_text(textwrap.dedent(_FILES[test_file]))
    environment = {**os.environ, "PYTHONPATH": str(TESTS), **env}
    command = [sys.executable, "-m", "pytest", "-p", "helpers.time_limits", "-p", "no:cacheprovider"]
    command += ["-c", os.devnull, "--rootdir", str(folder), "--timeout", "3", "-q", *args, str(folder)]
    started = time.monotonic()
    result = run_bounded(command, timeout=120, cwd=REPO, env=environment)
    return result, time.monotonic() - started


@pytest.mark.slow
def test_a_test_past_the_limit_fails_by_itself_naming_itself(tmp_path):
    result, seconds = _pytest(tmp_path, "test_sleeps.py")
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "FAILED" in output and "test_sleeps_past_the_limit" in output and "Timeout" in output, output
    assert "1 failed, 1 passed" in output, output
    assert seconds < 60, f"the limit of 3 s took {seconds:.0f} s to act"


@pytest.mark.slow
def test_a_timed_out_test_leaves_no_process_behind(tmp_path):
    """Its clean-up kills what it started before the next test begins (and nothing outlives the session)."""
    pid_file = tmp_path / "child.pid"
    result, _ = _pytest(tmp_path, "test_leaves_a_child.py", CHILD_PID_FILE=str(pid_file))
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "1 failed, 1 passed" in output, output
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid), f"the child {pid} of the timed-out test still runs"


@pytest.mark.slow
def test_a_test_deaf_to_the_limit_is_ended_by_the_watchdog_and_named(tmp_path):
    """With pytest-xdist (as the README's command runs): the worker is ended, the test reported as crashed
    by name, and the session goes on with the next test."""
    result, seconds = _pytest(
        tmp_path, "test_deaf_to_the_alarm.py", "-n", "1", SUPCLAP_TEST_HARD_LIMIT_GRACE="2"
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "crashed while running" in output and "test_stuck_where_no_python_runs" in output, output
    assert "1 passed" in output, output  # test_after_it ran on a fresh worker
    assert "test_stuck_where_no_python_runs" in output.split("Timeout (0:00:05)!")[-1], output
    assert seconds < 90


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by its parent) is not running
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][0] != "Z"
    except OSError:
        return True
