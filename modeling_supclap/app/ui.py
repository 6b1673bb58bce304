"""The demo page: Gradio Blocks with one tab per question, each tab's function also an API endpoint.

Endpoints (``gradio_client.Client(url).predict(..., api_name=...)``):

- ``/zero_shot`` (clip, comma-separated labels) -> (``{label: probability}``, note)

Every event goes through one queue with ``concurrency_limit`` model calls at a time (the rest wait their
turn, and the page shows their place in the queue). An input the app cannot use raises ``gr.Error`` with
the :class:`~.inputs.UserFacingError`'s message: the page shows it, a client gets it as its error; anything
else is logged with its traceback on the server and the page says only that the server failed.
"""

from __future__ import annotations

import functools
import html
import logging
import re
from collections.abc import Callable
from typing import Any

import gradio as gr

from .inputs import UserFacingError
from .service import DemoService

__all__ = ["build_page"]

logger = logging.getLogger(__name__)

TITLE = "SupCLAP demo"
# Events share this concurrency group: one model, so ``concurrency_limit`` calls of any tab at a time.
MODEL_CALLS = "model"


def _message_html(text: str) -> str:
    """A :class:`UserFacingError` message (Markdown with names in backticks) as safe HTML for the modal:
    escaped (a file name is the uploader's to choose), backtick spans as ``<code>``."""
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(text))


def answering(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` as an event handler: a :class:`UserFacingError` becomes a ``gr.Error`` with its message;
    an unexpected error is logged with its traceback and shown as a one-line server failure."""

    @functools.wraps(function)
    def handler(*args: Any) -> Any:
        try:
            return function(*args)
        except UserFacingError as error:
            raise gr.Error(_message_html(str(error)), duration=None) from None
        except Exception as error:
            logger.exception("the demo app failed answering %s", function.__name__)
            raise gr.Error(
                f"The server failed answering this ({html.escape(type(error).__name__)}); its log has the "
                "details. Try again, or with another input.",
                duration=None,
            ) from None

    return handler


def _header(service: DemoService) -> str:
    window = service.window_seconds
    heard = f"; the model's window is {window:g} s" if window else ""
    return (
        f"# {TITLE}\n"
        f"Model **`{service.model_name}`** on `{service.device}`. Uploads: the first "
        f"{service.max_audio_seconds:g} s are used{heard}."
    )


def build_page(service: DemoService, concurrency_limit: int = 1) -> gr.Blocks:
    """The page for ``service``; launch it with ``.queue(...).launch(...)`` (see ``launch.py``)."""

    def zero_shot(clip: str | None, labels: str) -> tuple[dict[str, float], str]:
        """Probabilities of each comma-separated label for the clip (the zero-shot pipeline's)."""
        answer = service.zero_shot(clip, labels)
        return answer.probabilities, answer.note

    with gr.Blocks(title=TITLE) as page:
        gr.Markdown(_header(service), elem_id="served")
        with gr.Tab("Zero-shot", id="zero_shot"):
            with gr.Row():
                with gr.Column():
                    zero_shot_clip = gr.Audio(
                        sources=["upload", "microphone"],
                        type="filepath",
                        label="Clip (upload or record)",
                        elem_id="zero_shot_clip",
                    )
                    labels = gr.Textbox(
                        value=", ".join(service.default_labels),
                        label="Labels, separated by commas",
                        elem_id="labels",
                    )
                    classify = gr.Button("Classify", variant="primary", elem_id="classify")
                with gr.Column():
                    probabilities = gr.Label(label="Probability of each label", elem_id="probabilities")
                    zero_shot_note = gr.Markdown(elem_id="zero_shot_note")
        classify.click(
            answering(zero_shot),
            inputs=[zero_shot_clip, labels],
            outputs=[probabilities, zero_shot_note],
            api_name="zero_shot",
            concurrency_limit=concurrency_limit,
            concurrency_id=MODEL_CALLS,
        )
    return page
