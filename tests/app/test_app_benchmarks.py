"""The app's benchmarks, run as a user runs them (small sizes): start-up from nothing and again, and load."""

from __future__ import annotations

import json
import re
import sys

import pytest
from helpers.cli import REPO
from helpers.processes import run_bounded

pytestmark = pytest.mark.slow

BENCHMARKS = REPO / "benchmarks"


def _table_rows(stdout: str) -> list[list[str]]:
    """The rows of the Markdown table printed, its header first (the ``| --- |`` line left out)."""
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in stdout.splitlines()
        if line[:2] == "| "
    ]
    return [row for row in rows if set(row) != {"---"}]


def test_start_up_from_nothing_builds_the_demo_once_with_progress_then_only_loads(tmp_path):
    """``app.py`` with no arguments in an empty folder: the demo model trained, the test split indexed (each
    command printed, with its progress), served; started again in that folder, it only loads."""
    workdir = tmp_path / "fresh"
    run = run_bounded(
        [sys.executable, str(BENCHMARKS / "bench_app_startup.py"), "--workdir", str(workdir), "--smoke"]
        + ["--json", str(tmp_path / "startup.json")],
        timeout=1200,
        cwd=REPO,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (first, second) = _table_rows(run.stdout)[1:]
    assert first[0] == "from nothing" and re.fullmatch(
        r"training the demo model \d+ s; indexing the demo test split \d+ s", first[1]
    ), first
    assert second[:2] == ["from the existing folder", "nothing (loaded)"], second
    assert all(float(seconds) > 0 for seconds in first[2:] + second[2:])
    starts = json.loads((tmp_path / "startup.json").read_text())["starts"]
    # While it built, the address answered with the getting-ready page, long before the app's page.
    assert starts[0]["getting_ready_page_seen"], starts[0]
    assert "is getting ready" in starts[0]["getting_ready_page_last"]
    assert "training the demo model" in starts[0]["getting_ready_page_last"]
    assert starts[0]["address_answers_s"] < starts[0]["page_up_s"] / 2
    assert [start["start"] for start in starts] == ["from nothing", "from the existing folder"]
    assert set(starts[0]["built_s"]) == {"training the demo model", "indexing the demo test split"}
    assert starts[1]["built_s"] == {}
    built = (workdir / "app_from_nothing.log").read_text()
    for shown in (
        "supclap-app: training the demo model (missing; done once): ",
        "-m modeling_supclap.cli.train --output_dir outputs/supclap-demo --cache_dir .cache/supclap",
        "supclap-app: indexing the demo test split (missing; done once): ",
        "-m modeling_supclap.cli.embed --model_name_or_path outputs/supclap-demo --data "
        ".cache/supclap/demo_corpus_80",
        "embedding: 100%",  # supclap-embed's progress bar
        "supclap-app: serving outputs/supclap-demo on cpu with the index .cache/supclap/app_indexes/",
    ):
        assert shown in built, shown
    again = (workdir / "app_again.log").read_text()
    assert "missing; done once" not in again and "supclap-app: serving outputs/supclap-demo" in again


def test_load_benchmark_answers_every_concurrent_user(served, tmp_path):
    run = run_bounded(
        [
            sys.executable,
            str(BENCHMARKS / "bench_app_load.py"),
            "--url",
            served.url,
            "--users",
            "4",
            "--alone",
            "2",
            "--json",
            str(tmp_path / "load.json"),
        ],
        timeout=600,
        cwd=REPO,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (row,) = _table_rows(run.stdout)[1:]
    assert row[:2] == ["4", "4/4"], row
    median, worst, all_done, alone = map(float, row[2:])
    assert 0 < alone and 0 < median <= worst <= all_done + 0.5, row
    numbers = json.loads((tmp_path / "load.json").read_text())
    assert numbers["answered"] == 4 and len(numbers["latencies_s"]) == 4
    assert max(numbers["latencies_s"]) == numbers["worst_latency_s"]
