#!/usr/bin/env python
"""Load on the demo app: N people searching at the same moment, through ``gradio_client``.

Each simulated person has their own ``gradio_client.Client`` (their own session), made beforehand; all
submit one ``/search`` at once (a barrier) and wait for its answer. Reported: how many were answered, the
median and the worst latency (submit to answer), the time until the last answer, and, for scale, the median
of searches made one at a time. The app queues requests beyond its ``--concurrency_limit`` (default 1: one
model call at a time), so the worst latency is about N times one search.

Usage::

    # serve the model and index given (a server of this script), then load it
    python benchmarks/bench_app_load.py --model_name_or_path outputs/supclap-demo --index INDEX
    # or load an app already running
    python benchmarks/bench_app_load.py --url http://127.0.0.1:7860 --users 20 --json load.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))

from helpers.app_server import AppServer  # noqa: E402  (tests/ is on sys.path: the tests' bounded server)

QUERIES = ["two short high beeps", "a low hum", "a dog barks twice", "three quiet knocks", "a rising whistle"]


def timed_search(client, query: str, top_k: int) -> float:
    started = time.perf_counter()
    hits, _ = client.predict(query, top_k, api_name="/search")
    assert hits, f"no answer to {query!r}"
    return time.perf_counter() - started


def concurrent_searches(url: str, users: int, top_k: int, timeout: float) -> tuple[list[float | None], float]:
    """Each user's latency (None: not answered within ``timeout``), and the seconds until the last answer."""
    from gradio_client import Client

    clients = [Client(url, verbose=False, download_files=False) for _ in range(users)]
    latencies: list[float | None] = [None] * users
    barrier = threading.Barrier(users + 1)

    def search(user: int) -> None:
        barrier.wait()
        job = clients[user].submit(QUERIES[user % len(QUERIES)], top_k, api_name="/search")
        started = time.perf_counter()
        hits, _ = job.result(timeout=timeout)
        if hits:
            latencies[user] = time.perf_counter() - started

    threads = [threading.Thread(target=search, args=(user,), daemon=True) for user in range(users)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join(timeout)
    return latencies, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="An app already running (else one is started with the next two).")
    parser.add_argument("--model_name_or_path")
    parser.add_argument("--index")
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--top_k", type=int, default=10)
    parser.add_argument("--alone", type=int, default=5, help="Searches made one at a time, for scale.")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--json", type=Path, help="Also write the numbers (each latency too) here.")
    args = parser.parse_args()
    if not args.url and not (args.model_name_or_path and args.index):
        parser.error("give --url, or --model_name_or_path and --index")
    from gradio_client import Client

    load_before = os.getloadavg()[0]
    with ExitStack() as stack:
        url = args.url
        if url is None:
            log = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "app.log"
            serve = ["--model_name_or_path", args.model_name_or_path, "--index", args.index]
            env = {"PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}
            url = stack.enter_context(AppServer(serve, log, env=env)).url
        client = Client(url, verbose=False, download_files=False)
        timed_search(client, QUERIES[0], args.top_k)  # warm-up
        alone = statistics.median(timed_search(client, q, args.top_k) for q in QUERIES[: args.alone])
        latencies, all_done = concurrent_searches(url, args.users, args.top_k, args.timeout)
    answered = [latency for latency in latencies if latency is not None]
    load = os.getloadavg()[0]
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, load {load:.1f}; top_k {args.top_k}")
    print(
        "| users at once | answered | median latency (s) | worst latency (s) | all answered after (s) "
        "| one search alone (s) |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    median = f"{statistics.median(answered):.2f}" if answered else "-"
    worst = f"{max(answered):.2f}" if answered else "-"
    print(
        f"| {args.users} | {len(answered)}/{args.users} | {median} | {worst} | {all_done:.2f} | {alone:.3f} |"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        summary = {
            "command": "python " + " ".join(sys.argv),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average_1min": {"before": load_before, "after": load},
            "users": args.users,
            "top_k": args.top_k,
            "answered": len(answered),
            "median_latency_s": statistics.median(answered) if answered else None,
            "worst_latency_s": max(answered) if answered else None,
            "all_answered_after_s": all_done,
            "one_search_alone_median_s": alone,
            "latencies_s": latencies,
        }
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    if len(answered) != args.users:
        sys.exit(1)


if __name__ == "__main__":
    main()
