"""DataLoader workers and stop signals (modeling_supclap/data/workers.py).

A worker must ignore a scheduler's SIGTERM/SIGUSR1 (the main process checkpoints on them) yet still end
on its parent's SIGTERM, which is how the loader stops a worker that did not exit in time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from helpers.cli import REPO
from helpers.processes import start

pytestmark = pytest.mark.skipif(not hasattr(signal, "sigwaitinfo"), reason="POSIX signals with sender ids")

# A loader whose worker is stuck in its dataset when the loader shuts down, so that shutdown ends in
# Process.terminate(): the parent's SIGTERM.
_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    import torch
    from torch.utils.data import DataLoader, IterableDataset
    from modeling_supclap.data.workers import ignore_stop_signals

    class StuckAfterOne(IterableDataset):
        def __iter__(self):
            yield torch.tensor(os.getpid())
            time.sleep(600)
            yield torch.tensor(0)

    loader = DataLoader(StuckAfterOne(), batch_size=None, num_workers=1, worker_init_fn=ignore_stop_signals)
    iterator = iter(loader)
    print(int(next(iterator)), flush=True)
    sys.stdin.readline()  # the test signals the worker meanwhile
    print("alive" if iterator._workers[0].is_alive() else "dead", flush=True)
    del iterator  # shutdown: join times out, then terminate()
    print("shut down", flush=True)
    """
)


@pytest.mark.slow
def test_a_worker_ignores_a_strangers_stop_signals_and_ends_on_its_parents():
    process = start(
        [sys.executable, "-c", _SCRIPT],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        worker = int(process.stdout.readline())
        for signum in (signal.SIGTERM, signal.SIGUSR1):  # sent by this test: not the worker's parent
            os.kill(worker, signum)
        time.sleep(1.0)
        process.stdin.write("go\n")
        process.stdin.flush()
        assert process.stdout.readline().strip() == "alive"
        # The loader's terminate() must end the worker; a worker deaf to SIGTERM hung here until the
        # test timed out.
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr[-3000:]
    assert "shut down" in stdout
    with pytest.raises(ProcessLookupError):
        os.kill(worker, 0)
