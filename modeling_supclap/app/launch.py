"""Serving the demo page: the queue, the server, and the folders it may hand files from.

Nothing leaves the machine: Gradio's analytics are off, there is no share link, and the page is served
without server-side rendering (no Node process).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

import gradio as gr

from .service import DemoService
from .ui import build_page

__all__ = ["serve"]

logger = logging.getLogger(__name__)

# Uploads larger than this are refused by the server before the app reads them (a ten-minute 48 kHz
# stereo WAV is 110 MB); the app then uses only the first ``max_audio_seconds`` of what it accepts.
MAX_UPLOAD_SIZE = "200mb"


def serve(
    service: DemoService,
    host: str | None = None,
    port: int | None = None,
    concurrency_limit: int = 1,
    max_queue_size: int | None = 64,
    audio_folders: Iterable[str | os.PathLike] = (),
    block: bool = True,
) -> gr.Blocks:
    """Build the page for ``service`` and serve it on ``host:port`` (None: Gradio's default, or the
    ``GRADIO_SERVER_NAME``/``GRADIO_SERVER_PORT`` a Space sets).

    ``concurrency_limit`` model calls run at a time; up to ``max_queue_size`` more wait in the queue (None:
    no limit), each told its place. ``audio_folders``: where the index's clips are, which the result players
    may stream from (nothing else on the machine is served). ``block=False`` returns once the server is up.
    """
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    page = build_page(service, concurrency_limit=concurrency_limit)
    page.queue(default_concurrency_limit=concurrency_limit, max_size=max_queue_size)
    allowed = sorted({str(Path(folder).resolve()) for folder in audio_folders})
    page.launch(
        server_name=host,
        server_port=port,
        allowed_paths=allowed,
        max_file_size=MAX_UPLOAD_SIZE,
        ssr_mode=False,
        share=False,
        prevent_thread_lock=not block,
    )
    return page
