"""Serving the demo page: the queue, the server, and the folders it may hand files from.

Nothing leaves the machine: Gradio's analytics are off (``ui.py``), there is no share link, and the page is
served without server-side rendering (no Node process).
"""

from __future__ import annotations

import gradio as gr

from .service import DemoService
from .ui import CSS, build_page

__all__ = ["serve"]

# Uploads larger than this are refused by the server before the app reads them (a ten-minute 48 kHz
# stereo WAV is 110 MB); the app then uses only the first ``max_audio_seconds`` of what it accepts.
MAX_UPLOAD_SIZE = "200mb"


def serve(
    service: DemoService,
    host: str | None = None,
    port: int | None = None,
    concurrency_limit: int = 1,
    max_queue_size: int | None = 64,
    block: bool = True,
) -> gr.Blocks:
    """Build the page for ``service`` and serve it on ``host:port`` (None: Gradio's default, or the
    ``GRADIO_SERVER_NAME``/``GRADIO_SERVER_PORT`` a Space sets).

    ``concurrency_limit`` model calls run at a time; up to ``max_queue_size`` more wait in the queue (None:
    no limit), each told its place. The result players may stream the index's clips, from the folders they
    are in (nothing else on the machine is served). ``block=False`` returns once the server is up.
    """
    page = build_page(service, concurrency_limit=concurrency_limit)
    page.queue(default_concurrency_limit=concurrency_limit, max_size=max_queue_size)
    page.launch(
        server_name=host,
        server_port=port,
        allowed_paths=[str(folder.resolve()) for folder in service.audio_folders()],
        css=CSS,
        max_file_size=MAX_UPLOAD_SIZE,
        ssr_mode=False,
        share=False,
        prevent_thread_lock=not block,
    )
    return page
