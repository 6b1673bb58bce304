"""The demo app as a server process of a test: started on a free local port, waited for (bounded), killed.

The process is started through ``processes.start`` (a process group of its own, dying with the test
process), its output goes to a log file the test can read, and leaving the ``with`` block kills its group,
whatever happened inside it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from .cli import REPO
from .processes import free_port, kill_group, start

APP_MODULE = ["-m", "modeling_supclap.cli.app"]


class AppServer:
    """``python <command> ... --host 127.0.0.1 --port <free port>`` in ``cwd``, up within ``startup_timeout``.

    ``command``: what follows the interpreter, by default ``-m modeling_supclap.cli.app`` (``["app.py"]``
    runs a Space's file as a Space does).
    """

    def __init__(
        self,
        args: Sequence[str],
        log_path: Path,
        command: Sequence[str] = APP_MODULE,
        cwd: Path = REPO,
        env: Mapping[str, str | None] | None = None,
        startup_timeout: float = 300.0,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = [sys.executable, *command, *args, "--host", "127.0.0.1", "--port", str(self.port)]
        self.log_path, self.cwd, self.startup_timeout = log_path, cwd, startup_timeout
        merged = {
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
            "GRADIO_ANALYTICS_ENABLED": "False",
        }
        for key, value in (env or {}).items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        self.env = merged
        self.process: subprocess.Popen | None = None
        # The getting-ready page (app/getting_ready.py), if the address served it before the app: its last
        # text, and the seconds from the start until the address first answered at all.
        self.getting_ready_text: str | None = None
        self.first_answer_s: float | None = None

    def __enter__(self) -> AppServer:
        self._log = open(self.log_path, "w")  # noqa: SIM115  (closed in __exit__)
        self.process = start(
            self.command,
            across_tests=True,
            cwd=self.cwd,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            self._wait_until_up()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            kill_group(self.process)
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _wait_until_up(self) -> None:
        started = time.monotonic()
        deadline = started + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"the app exited with status {self.process.returncode}:\n{self.log()[-4000:]}"
                )
            try:
                with urllib.request.urlopen(self.url + "/", timeout=5) as response:
                    if response.status == 200:
                        self.first_answer_s = self.first_answer_s or time.monotonic() - started
                        return
            except urllib.error.HTTPError as error:  # 503: the getting-ready page
                self.first_answer_s = self.first_answer_s or time.monotonic() - started
                if error.code == 503:
                    self.getting_ready_text = error.read().decode(errors="replace")
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.5)
        raise AssertionError(f"the app was not up after {self.startup_timeout:g} s:\n{self.log()[-4000:]}")
