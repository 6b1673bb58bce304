#!/usr/bin/env python
"""Run every multi-process test many times, to show the suite cannot hang (README: "The tests").

A multi-process test starts two or more cooperating processes (a gloo process group, ``accelerate
launch``/``torch.distributed.run`` with two ranks, two training processes signalled one by one).  Each
round runs all of them once under ``pytest -n 2`` with the suite's time limits; with ``--load`` the fast
tier runs in a loop beside every round, so the machine is loaded as by two suites side by side.
A hang would show as a test failing by its time limit, named, in the round's JUnit file.

Usage::

    python .ci/stress_multiprocess.py --rounds 20 --load --out outputs/stress
    python .ci/stress_multiprocess.py --list     # the tests it runs
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Tests whose processes cooperate (a process group, two launched ranks, two runs on one folder, DataLoader
# workers signalled): the ones a teardown deadlock or a lost signal would hang.
MULTI_PROCESS_TESTS = [
    "tests/model/test_gradient_cache.py::test_two_processes_cached_and_gathered_equal_the_dense_global_batch",
    "tests/model/test_distributed_loss.py::test_two_gloo_processes_match_one_process",
    "tests/model/test_dual_encoder.py::test_two_gloo_processes_equal_one_process_on_the_global_batch",
    "tests/model/test_trainer_peft_pipeline.py::test_trainer_under_two_processes_uses_global_negatives",
    "tests/cli/test_train_cli.py::test_two_cpu_processes_train_and_save_one_model",
    "tests/data/test_streaming.py::test_two_processes_by_two_workers_see_each_sample_once_per_epoch",
    "tests/data/test_streaming.py::test_two_cpu_processes_train_from_shards_each_sample_once_per_epoch",
    "tests/data/test_streaming.py::test_kill_minus_9_mid_epoch_then_resume_is_one_epoch_and_the_same_weights",
    "tests/data/test_dataloader_workers.py",
    "tests/training/test_resilience.py::test_sigusr1_to_one_of_two_processes_stops_both_with_one_checkpoint",
    "tests/training/test_resilience.py::test_a_killed_rank_makes_the_survivor_exit_soon_naming_it_then_resume_works",
    "tests/training/test_resilience.py::test_a_second_run_in_the_same_folder_refuses_while_the_first_holds_it",
    "tests/training/test_resilience.py::test_a_nonfinite_step_on_one_rank_is_skipped_by_all_and_weights_stay_identical",
]


def run_round(nodes: list[str], junit: Path, timeout: float) -> tuple[int, float]:
    start = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-n",
            "2",
            "-p",
            "no:cacheprovider",
            "--durations=0",
            f"--junitxml={junit}",
            *nodes,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    junit.with_suffix(".log").write_text(proc.stdout[-20000:] + proc.stderr[-5000:])
    return proc.returncode, time.monotonic() - start


def results(junit: Path) -> list[dict]:
    rows = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        failed = case.find("failure") is not None or case.find("error") is not None
        skipped = case.find("skipped") is not None
        rows.append(
            {
                "test": f"{case.get('classname')}::{case.get('name')}",
                "seconds": float(case.get("time", 0)),
                "outcome": "failed" if failed else "skipped" if skipped else "passed",
            }
        )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--load", action="store_true", help="run the fast tier in a loop beside every round")
    p.add_argument("--out", type=Path, default=REPO / "outputs" / "stress")
    p.add_argument(
        "--round_timeout", type=float, default=3600, help="seconds; a round past it counts as hung"
    )
    p.add_argument("--list", action="store_true")
    args = p.parse_args()
    nodes = MULTI_PROCESS_TESTS
    if args.list:
        subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", *nodes], cwd=REPO, check=True)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    summary_path = args.out / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {"rounds": []}
    for index in range(len(summary["rounds"]), args.rounds):
        load = None
        if args.load:
            load = subprocess.Popen(  # the fast tier again and again until the round ends
                ["bash", "-c", f"while true; do {sys.executable} -m pytest -q -n 2 -m 'not slow' "
                 "-p no:cacheprovider tests; done"],
                cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        load_avg = os.getloadavg()[0]
        junit = args.out / f"round{index:02d}.xml"
        try:
            code, seconds = run_round(nodes, junit, args.round_timeout)
        except subprocess.TimeoutExpired:
            code, seconds = -1, args.round_timeout
        finally:
            if load is not None:
                try:
                    os.killpg(load.pid, 15)
                except ProcessLookupError:
                    pass
                load.wait(timeout=60)
        rows = results(junit) if junit.exists() else []
        summary["rounds"].append(
            {
                "round": index,
                "exit": code,
                "seconds": round(seconds, 1),
                "load_at_start": round(load_avg, 2),
                "tests": rows,
            }
        )
        summary_path.write_text(json.dumps(summary, indent=1))
        failed = [r["test"] for r in rows if r["outcome"] == "failed"]
        print(
            f"round {index}: exit {code}, {seconds:.0f} s, load {load_avg:.1f}, "
            f"{sum(r['outcome'] == 'passed' for r in rows)} passed, failed: {failed}",
            flush=True,
        )
    report(summary)


def report(summary: dict) -> None:
    per_test: dict[str, list[dict]] = {}
    for rnd in summary["rounds"]:
        for row in rnd["tests"]:
            per_test.setdefault(row["test"], []).append(row)
    print("| test | runs | passed | failed | median s | max s |")
    print("|---|---|---|---|---|---|")
    for test, rows in sorted(per_test.items()):
        secs = sorted(r["seconds"] for r in rows)
        print(
            f"| {test} | {len(rows)} | {sum(r['outcome'] == 'passed' for r in rows)} | "
            f"{sum(r['outcome'] == 'failed' for r in rows)} | {secs[len(secs) // 2]:.1f} | {secs[-1]:.1f} |"
        )
    hung = [r["round"] for r in summary["rounds"] if r["exit"] == -1]
    print(f"rounds: {len(summary['rounds'])}, rounds past --round_timeout: {hung or 'none'}")


if __name__ == "__main__":
    main()
