"""The suite's time limits, as a pytest plugin (``conftest.py`` loads it; the tests of the limits load it
into a pytest of their own).

pytest-timeout (``timeout`` in ``pyproject.toml``, signal method) fails a test that runs too long with its
name, and the test's clean-up still runs: the autouse fixture below kills the process groups it started
(``helpers.processes``). A test process stuck in C code with the GIL held never runs that signal's
handler, so a C-level watchdog (``faulthandler``) backs it up: at the limit plus
``SUPCLAP_TEST_HARD_LIMIT_GRACE`` seconds (default 120) it prints every thread's stack to the real stderr
and ends the process; pytest-xdist then reports the test as crashed, by name, and goes on with a fresh
worker (the processes the test started die with it: ``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import faulthandler
import os
import sys

import pytest

from . import processes

_stack_dump_file = sys.stderr  # replaced in pytest_configure by the stderr that pytest does not capture


def _grace_seconds() -> float:
    return float(os.environ.get("SUPCLAP_TEST_HARD_LIMIT_GRACE", "120"))


def _time_limit(item: pytest.Item) -> float:
    """The test's pytest-timeout limit in seconds (its marker, else ``--timeout`` / the ini value)."""
    marker = item.get_closest_marker("timeout")
    if marker is not None and marker.args:
        return float(marker.args[0])
    value = item.config.getoption("timeout", None)
    if value is None:
        value = item.config.getini("timeout")
    return float(value or 0)


def pytest_configure(config: pytest.Config) -> None:
    global _stack_dump_file
    # The watchdog writes from C at a moment no Python code runs, so it cannot suspend pytest's output
    # capture: give it the real stderr, which the capture plugin keeps (private; else sys.stderr).
    capturing = getattr(config.pluginmanager.getplugin("capturemanager"), "_global_capturing", None)
    saved_fd = getattr(getattr(capturing, "err", None), "targetfd_save", None)
    if saved_fd is not None:
        _stack_dump_file = os.fdopen(os.dup(saved_fd), "w")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    limit = _time_limit(item)
    if limit > 0:
        faulthandler.dump_traceback_later(limit + _grace_seconds(), exit=True, file=_stack_dump_file)
    try:
        yield
    finally:
        if limit > 0:
            faulthandler.cancel_dump_traceback_later()


@pytest.fixture(autouse=True)
def _end_leftover_processes():
    """After every test: kill the process groups it started (``helpers.processes.start``) that still run."""
    yield
    leftovers = processes.kill_leftovers()
    if leftovers:
        print(f"killed processes left running by the test: {leftovers}", file=sys.stderr)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The servers fixtures shared between tests (``start(..., across_tests=True)``) end with the session."""
    processes.kill_shared()


# The fast tier (``-m "not slow"``, README: "The tests") stays under three minutes on two cores only if
# slow tests carry the marker: name the unmarked ones that took longer than this, after every run.
FAST_TIER_LIMIT_SECONDS = 5.0
_unmarked_slow: list[tuple[str, float]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" and "slow" not in report.keywords and report.duration > FAST_TIER_LIMIT_SECONDS:
        _unmarked_slow.append((report.nodeid, report.duration))


def pytest_terminal_summary(terminalreporter) -> None:
    if _unmarked_slow:
        terminalreporter.section("tests for the slow tier")
        terminalreporter.write_line(
            f"over {FAST_TIER_LIMIT_SECONDS:.0f} s without @pytest.mark.slow (they slow the fast tier):"
        )
        for nodeid, seconds in sorted(_unmarked_slow, key=lambda item: -item[1]):
            terminalreporter.write_line(f"  {seconds:6.1f} s  {nodeid}")
