"""``supclap-app`` (``python -m modeling_supclap.cli.app``, ``python app.py``): the demo app in your browser.

Search an index by text, classify a clip you upload or record zero-shot, find the clips that sound like it,
with the model you name (a folder or a Hub id) and an index ``supclap-embed`` made with it::

    supclap-app --model_name_or_path outputs/supclap-demo --index my_index --port 7860

Given no model, it serves the demo model (``python train_supclap.py``'s ``outputs/supclap-demo``), training
it first if it is missing; given no index, an index of the demo corpus's test split made by the model
served, built once under --cache_dir (minutes on a CPU: progress printed, and the address shows a page with
the steps until the app is up).
"""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import run
from .parsing import parse_arguments


@dataclass(kw_only=True)
class AppArguments:
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "The model to serve: a folder or a Hub id. Unset: the demo model (--demo_model_dir)."
        },
    )
    index: str | None = field(
        default=None,
        metadata={
            "help": "The index to search (a folder supclap-embed wrote with this model). Unset: the demo "
            "corpus's test split, indexed once with the model under --cache_dir."
        },
    )
    port: int | None = field(
        default=None, metadata={"help": "Port to serve on (unset: 7860, or GRADIO_SERVER_PORT)."}
    )
    host: str | None = field(
        default=None,
        metadata={"help": "Address to serve on (unset: 127.0.0.1, or GRADIO_SERVER_NAME; 0.0.0.0: all)."},
    )
    device: str = field(
        default="auto", metadata={"help": "auto (a GPU if there is one), cpu, cuda, cuda:1..."}
    )
    max_audio_seconds: float = field(
        default=30.0, metadata={"help": "Only the first this many seconds of an upload are used."}
    )
    concurrency_limit: int = field(
        default=1, metadata={"help": "Model calls at a time; further requests wait in the queue."}
    )
    max_queue_size: int = field(default=64, metadata={"help": "Requests that may wait; more are refused."})
    cache_dir: str = field(
        default=".cache/supclap", metadata={"help": "Where the demo corpus and the demo indexes are cached."}
    )
    demo_num_clips: int = field(default=2400, metadata={"help": "Clips of the demo corpus."})
    demo_model_dir: str = field(
        default="outputs/supclap-demo",
        metadata={"help": "Where the demo model is (trained there first when missing)."},
    )
    demo_train_args: str = field(
        default="",
        metadata={
            "help": "Extra supclap-train arguments for training the demo model, e.g. '--max_steps 300'."
        },
    )


def main(argv: Sequence[str] | None = None, default_model_name_or_path: str | None = None) -> None:
    """``default_model_name_or_path``: what ``--model_name_or_path`` means when not given (a Space's
    ``app.py`` names its model here). Errors end in one message and an exit status (``cli/errors.py``)."""
    run("supclap-app", lambda args: _serve(args, default_model_name_or_path), argv)


def _serve(argv: Sequence[str], default_model_name_or_path: str | None) -> None:
    (args,) = parse_arguments((AppArguments,), argv, description=__doc__.splitlines()[0])
    from ..app import DemoService, ensure_demo_index, ensure_demo_model, serve
    from ..app.getting_ready import GettingReadyPage
    from ..inference.store import model_fingerprint

    start = time.perf_counter()
    print(f"supclap-app: the supclap code in {Path(__file__).resolve().parents[1]}", flush=True)
    # The address answers from now on: a page with the steps, until the app takes the port.
    with GettingReadyPage(args.host, args.port) as ready:
        model = args.model_name_or_path or default_model_name_or_path
        if model is None:
            demo_train_args = shlex.split(args.demo_train_args)
            model = str(
                ensure_demo_model(
                    args.demo_model_dir, args.cache_dir, args.demo_num_clips, demo_train_args, ready.step
                )
            )
        ready.step(f"loading the model {model}")
        service = DemoService.load(model, device=args.device, max_audio_seconds=args.max_audio_seconds)
        index = args.index or ensure_demo_index(
            model, model_fingerprint(service.model), args.cache_dir, args.demo_num_clips, ready.step
        )
        ready.step(f"reading the index {index}")
        service.use_index(index)
        ready.step("starting the page")
    print(
        f"supclap-app: serving {model} on {service.device} with the index {index} "
        f"({len(service.index)} clips), ready in {time.perf_counter() - start:.1f} s"
    )
    if service.index_problem:
        print(f"supclap-app: the index cannot be searched with this model: {service.index_problem}")
    sys.stdout.flush()
    serve(
        service,
        host=args.host,
        port=args.port,
        concurrency_limit=args.concurrency_limit,
        max_queue_size=args.max_queue_size,
    )


if __name__ == "__main__":
    main()
