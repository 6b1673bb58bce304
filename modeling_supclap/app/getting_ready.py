"""The page a person sees while the app gets ready: on the app's own address, from the first second.

Training the demo model and indexing its test split take minutes on a CPU. Without this page the browser
says "connection refused" for all that time; with it, the address answers at once (status 503, so API
clients know it is not the app yet) with the steps so far, and reloads itself until the app takes the port.
"""

from __future__ import annotations

import html
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["GettingReadyPage", "serving_address"]

REFRESH_SECONDS = 2


def serving_address(host: str | None, port: int | None) -> tuple[str, int]:
    """The address Gradio will serve on: the given one, else a Space's ``GRADIO_SERVER_NAME`` /
    ``GRADIO_SERVER_PORT``, else Gradio's defaults."""
    return (
        host or os.environ.get("GRADIO_SERVER_NAME") or "127.0.0.1",
        port or int(os.environ.get("GRADIO_SERVER_PORT") or 7860),
    )


class GettingReadyPage:
    """Serves the getting-ready page on ``host:port`` from ``__enter__`` to ``__exit__``; ``step(text)`` adds
    a line. Where the address is taken, it says so and serves nothing (the app's own start then names the
    problem)."""

    def __init__(self, host: str | None, port: int | None, title: str = "supclap-app") -> None:
        self.address = serving_address(host, port)
        self.title = title
        self._steps: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._started = time.monotonic()

    def step(self, text: str) -> None:
        with self._lock:
            self._steps.append((time.monotonic(), text))

    def render(self) -> str:
        now = time.monotonic()
        with self._lock:
            steps = list(self._steps)
        items = "".join(
            f"<li>{html.escape(text)} <small>({now - at:.0f} s ago)</small></li>" for at, text in steps
        )
        return (
            f'<!doctype html><html><head><meta charset="utf-8"><meta http-equiv="refresh" '
            f'content="{REFRESH_SECONDS}"><title>{html.escape(self.title)}: getting ready</title></head>'
            f'<body style="font-family: sans-serif; max-width: 48em; margin: 2em auto">'
            f"<h1>{html.escape(self.title)} is getting ready</h1>"
            f"<p>Started {now - self._started:.0f} s ago. This page reloads itself; the app appears here "
            f"when it is ready (the terminal shows the progress bars).</p><ol>{items}</ol></body></html>"
        )

    def __enter__(self) -> GettingReadyPage:
        page = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                body = page.render().encode()
                self.send_response(503)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Retry-After", str(REFRESH_SECONDS))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:  # requests are not news on the terminal
                pass

        try:
            self._server = ThreadingHTTPServer(self.address, Handler)
        except OSError as error:
            print(f"supclap-app: no getting-ready page on {self.address[0]}:{self.address[1]} ({error})")
            return self
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="getting-ready-page", daemon=True).start()
        print(f"supclap-app: getting ready; http://{self.address[0]}:{self.address[1]} shows the steps")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()  # returns once serve_forever has stopped
            self._server.server_close()  # frees the port for the app
            self._server = None
