"""The demo page: Gradio Blocks with one tab per question, each tab's function also an API endpoint.

Endpoints (``gradio_client.Client(url).predict(..., api_name=...)``):

- ``/search`` (text, top_k) -> (hits, note): the index's clips that best match the text;
- ``/zero_shot`` (clip, comma-separated labels) -> (``{label: probability}``, note);
- ``/similar`` (clip, top_k) -> (hits, note): the index's clips that sound most like the clip.

``hits`` is a list of the search API's ``SearchHit`` rows as dicts (rank, score, id, key, duration,
num_windows, captions, label), the clip's file on the server as ``audio_file`` (a key named ``path`` would
make ``gradio_client`` download the clip and hand back only where it put it).

Every event goes through one queue with ``concurrency_limit`` model calls at a time (the rest wait their
turn, and the page shows their place in the queue). A question that cannot be answered raises ``gr.Error``
with the :class:`~.inputs.UserFacingError`'s message: the page shows it, a client gets it as its error;
anything else is logged with its traceback on the server and the page says only that the server failed.
"""

from __future__ import annotations

import functools
import html
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import gradio as gr

from .inputs import UserFacingError
from .service import MAX_TOP_K, DemoService, SearchAnswer

__all__ = ["CSS", "build_page", "results_html"]

logger = logging.getLogger(__name__)

TITLE = "SupCLAP demo"
DEFAULT_TOP_K = 5
# Events share this concurrency group: one model, so ``concurrency_limit`` calls of any tab at a time.
MODEL_CALLS = "model"
CSS = """
#search_results ol, #similar_results ol { padding-left: 0; list-style: none; }
.hit { margin: 0 0 0.8em 0; }
.hit .score { font-variant-numeric: tabular-nums; color: var(--body-text-color-subdued); }
.hit .caption { font-size: 0.9em; color: var(--body-text-color-subdued); }
.hit audio { width: 100%; height: 2.2em; }
"""


def _message_html(text: str) -> str:
    """A :class:`UserFacingError` message as safe HTML for the page's modal (which renders HTML; a file name
    is the uploader's to choose): ``<``, ``>`` and ``&`` escaped, nothing else, so a client reads it as
    written."""
    return html.escape(text, quote=False)


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


def results_html(hits: list[dict[str, Any]] | None) -> str:
    """The hits as a list: rank, clip name, score, its caption (or label), and a player streaming the clip
    from this server (``gradio_api/file=``, within the folders ``launch.serve`` allows)."""
    items = []
    for hit in hits or []:
        description = (hit.get("captions") or [hit.get("label") or ""])[0]
        path = hit.get("audio_file")
        if path and Path(path).is_file():
            player = f'<audio controls preload="metadata" src="gradio_api/file={quote(path)}"></audio>'
        else:
            player = '<div class="missing">(no audio file for this clip on this server)</div>'
        items.append(
            f'<li class="hit" data-rank="{int(hit["rank"])}"><span class="rank">{int(hit["rank"])}.</span> '
            f'<span class="name">{html.escape(str(hit["key"]))}</span> '
            f'<span class="score">{float(hit["score"]):.3f}</span>'
            f'<div class="caption">{html.escape(description)}</div>{player}</li>'
        )
    return f"<ol>{''.join(items)}</ol>" if items else ""


def _header(service: DemoService) -> str:
    window = service.window_seconds
    heard = f"; the model's window is {window:g} s" if window else ""
    lines = [
        f"# {TITLE}",
        f"Model **`{service.model_name}`** on `{service.device}`. Uploads: the first "
        f"{service.max_audio_seconds:g} s are used{heard}.",
    ]
    index = service.index
    if index is None:
        lines.append("No index: Search and Similar sounds need one (`--index`).")
    else:
        data = index.manifest.get("data", {})
        lines.append(
            f"Index **`{index.folder}`**: {len(index)} clips of `{data.get('location', '?')}` "
            f"(split `{data.get('split', '?')}`), embedded by `{index.model_name_or_path}`."
        )
        if service.index_problem:
            lines.append(f"**The index cannot be searched with this model.** {service.index_problem}")
    return "\n\n".join(lines)


def _as_outputs(answer: SearchAnswer) -> tuple[list[dict[str, Any]], str]:
    rows = []
    for hit in answer.hits:
        row = hit.to_dict()
        row["audio_file"] = row.pop("path")
        rows.append(row)
    return rows, answer.note


def build_page(service: DemoService, concurrency_limit: int = 1) -> gr.Blocks:
    """The page for ``service``; launch it with ``.queue(...).launch(...)`` (see ``launch.py``)."""

    def search(query: str, top_k: float) -> tuple[list[dict[str, Any]], str]:
        """The index's clips that best match the text, best first."""
        return _as_outputs(service.search(query, top_k))

    def zero_shot(clip: str | None, labels: str) -> tuple[dict[str, float], str]:
        """Probabilities of each comma-separated label for the clip (the zero-shot pipeline's)."""
        answer = service.zero_shot(clip, labels)
        return answer.probabilities, answer.note

    def similar(clip: str | None, top_k: float) -> tuple[list[dict[str, Any]], str]:
        """The index's clips that sound most like the clip, best first."""
        return _as_outputs(service.similar(clip, top_k))

    model_calls = {"concurrency_limit": concurrency_limit, "concurrency_id": MODEL_CALLS}
    # Uploads older than an hour are deleted every hour (a public Space would otherwise keep them all).
    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=(3600, 3600)) as page:
        gr.Markdown(_header(service), elem_id="served")
        with gr.Tab("Search", id="search"):
            with gr.Row():
                query = gr.Textbox(
                    label="Describe a sound", placeholder="two short high beeps", elem_id="query", scale=4
                )
                search_top_k = gr.Slider(1, MAX_TOP_K, value=DEFAULT_TOP_K, step=1, label="Results", scale=1)
            search_button = gr.Button("Search", variant="primary", elem_id="search_button")
            search_note = gr.Markdown(elem_id="search_note")
            search_results = gr.HTML(elem_id="search_results")
            search_hits = gr.JSON(visible=False)
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
        with gr.Tab("Similar sounds", id="similar"):
            with gr.Row():
                with gr.Column():
                    similar_clip = gr.Audio(
                        sources=["upload", "microphone"],
                        type="filepath",
                        label="Clip (upload or record)",
                        elem_id="similar_clip",
                    )
                    similar_top_k = gr.Slider(1, MAX_TOP_K, value=DEFAULT_TOP_K, step=1, label="Results")
                    find_similar = gr.Button("Find similar sounds", variant="primary", elem_id="find_similar")
                with gr.Column():
                    similar_note = gr.Markdown(elem_id="similar_note")
                    similar_results = gr.HTML(elem_id="similar_results")
                    similar_hits = gr.JSON(visible=False)

        gr.on(
            [search_button.click, query.submit],
            answering(search),
            inputs=[query, search_top_k],
            outputs=[search_hits, search_note],
            api_name="search",
            **model_calls,
        ).success(results_html, inputs=search_hits, outputs=search_results, api_visibility="private")
        classify.click(
            answering(zero_shot),
            inputs=[zero_shot_clip, labels],
            outputs=[probabilities, zero_shot_note],
            api_name="zero_shot",
            **model_calls,
        )
        find_similar.click(
            answering(similar),
            inputs=[similar_clip, similar_top_k],
            outputs=[similar_hits, similar_note],
            api_name="similar",
            **model_calls,
        ).success(results_html, inputs=similar_hits, outputs=similar_results, api_visibility="private")
    return page
