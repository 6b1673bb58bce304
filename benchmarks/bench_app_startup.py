#!/usr/bin/env python
"""Start-up time of the demo app (``python app.py``): from nothing, then from the folder that run left.

Run 1 starts ``app.py`` with no arguments in an empty ``--workdir`` (as a newcomer does after cloning): it
builds the demo corpus, trains the demo model into ``outputs/supclap-demo``, indexes the demo test split with
it, then serves. Run 2 starts the same command in the same folder: everything is there, so it only loads.
Each is timed from the command's start to the first answer of a ``/search`` through ``gradio_client``; the
phases are read from the app's own log lines ("...: done in X s"). The app's log is kept in the workdir.

Usage::

    python benchmarks/bench_app_startup.py --workdir /tmp/app_startup --json startup.json  # the real demo
    python benchmarks/bench_app_startup.py --workdir /tmp/s --smoke        # 80 clips, a 6-step tiny model
    # the demo model already trained (copied in): the first start builds the corpus and the index only
    python benchmarks/bench_app_startup.py --workdir /tmp/t --demo_model outputs/supclap-demo
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))

from helpers.app_server import AppServer  # noqa: E402  (tests/ is on sys.path: the tests' bounded server)

SMOKE_ARGS = [
    "--demo_num_clips",
    "80",
    "--demo_train_args",
    "--preset tiny --max_steps 6 --eval_steps 3 --per_device_train_batch_size 8 --dataloader_num_workers 0",
]
PHASE = re.compile(r"^supclap-app: (.+?): done in ([0-9.]+) s$", re.M)


def first_search_seconds(url: str, started: float) -> float:
    """Seconds from ``started`` to the first answer of /search (the app is then usable)."""
    from gradio_client import Client

    hits, _ = Client(url, verbose=False, download_files=False).predict(
        "two short high beeps", 5, api_name="/search"
    )
    assert hits, "the first search found nothing"
    return time.perf_counter() - started


def start_once(
    workdir: Path, extra: list[str], log_name: str, timeout: float
) -> tuple[float, float, float, list, str | None]:
    """(seconds until the address first answers (the getting-ready page, or the app), until the app's page
    answers, until the first search answers, the app's phases, the getting-ready page's last text)."""
    env = {"PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}
    started = time.perf_counter()
    with AppServer(
        extra,
        workdir / log_name,
        command=[str(REPO_ROOT / "app.py")],
        cwd=workdir,
        env=env,
        startup_timeout=timeout,
    ) as server:
        page = time.perf_counter() - started
        search = first_search_seconds(server.url, started)
        phases = PHASE.findall(server.log())
    return server.first_answer_s, page, search, phases, server.getting_ready_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True, help="An empty (or missing) folder.")
    parser.add_argument("--smoke", action="store_true", help="80 clips and a 6-step tiny model.")
    parser.add_argument("--timeout", type=float, default=3600.0, help="Longest wait for one start (s).")
    parser.add_argument("--json", type=Path, help="Also write the numbers here.")
    parser.add_argument(
        "--demo_model",
        type=Path,
        help="A trained demo model, copied to WORKDIR/outputs/supclap-demo before the first start.",
    )
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    if any(args.workdir.iterdir()):
        parser.error(f"--workdir {args.workdir} is not empty: the first start must find nothing")
    extra = SMOKE_ARGS if args.smoke else []
    first = "from nothing"
    if args.demo_model:
        shutil.copytree(args.demo_model, args.workdir / "outputs" / "supclap-demo")
        first = "from a trained demo model"
    rows, starts = [], []
    load_before = os.getloadavg()[0]
    for start, log_name in (
        (first, "app_from_nothing.log"),
        ("from the existing folder", "app_again.log"),
    ):
        answer, page, search, phases, ready_text = start_once(args.workdir, extra, log_name, args.timeout)
        built = "; ".join(f"{what} {float(seconds):.0f} s" for what, seconds in phases) or "nothing (loaded)"
        rows.append(f"| {start} | {built} | {answer:.1f} | {page:.1f} | {search:.1f} |")
        starts.append(
            {
                "start": start,
                "built_s": {what: float(seconds) for what, seconds in phases},
                "address_answers_s": answer,
                "getting_ready_page_seen": ready_text is not None,
                "getting_ready_page_last": ready_text,
                "page_up_s": page,
                "first_search_answered_s": search,
            }
        )
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print("| start | built (the app's log) | address answers (s) | page up (s) | first search answered (s) |")
    print("| --- | --- | --- | --- | --- |")
    print("\n".join(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        summary = {
            "command": "python " + " ".join(sys.argv),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
            "smoke": args.smoke,
            "demo_model": str(args.demo_model) if args.demo_model else None,
            "starts": starts,
        }
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
