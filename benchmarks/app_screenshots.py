#!/usr/bin/env python
"""Screenshots of the demo app's three tabs, each after answering a question, in headless Chromium.

The real app (``supclap-app``) serves the model and index given, on a free local port; Debian's ``chromium``
and ``chromium-driver`` drive its page as a person would (the browser tests' helpers): a typed query, a
clip of the index classified zero-shot against the page's default labels, the same clip's similar sounds.
The pictures are ``DIR/search.png``, ``DIR/zero_shot.png`` and ``DIR/similar.png`` (1280x1000).

Usage (the README's pictures, with the demo model and the index the app builds for it)::

    python benchmarks/app_screenshots.py --screenshots docs/app \\
        --model_name_or_path outputs/supclap-demo --index INDEX
    python benchmarks/app_screenshots.py --screenshots /tmp/shots --url http://127.0.0.1:7860 --clip a.wav
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))

from helpers.app_server import AppServer  # noqa: E402  (tests/ is on sys.path: the tests' helpers)
from helpers.browser import Browser, DemoPage, browser_missing, screenshot_tabs  # noqa: E402


def first_clip(index: str) -> Path:
    """The audio file of the index's first clip (the clip the Zero-shot and Similar tabs are given)."""
    from modeling_supclap.inference import EmbeddingIndex

    return Path(EmbeddingIndex.load(index).row(0)["path"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--screenshots", type=Path, required=True, help="Folder of the three PNG files.")
    parser.add_argument("--url", help="An app already running (else one is started with the next two).")
    parser.add_argument("--model_name_or_path")
    parser.add_argument("--index")
    parser.add_argument("--clip", type=Path, help="The clip to upload (default: the index's first clip).")
    parser.add_argument("--query", default="two short high beeps, then a low hum")
    parser.add_argument("--labels", help="Zero-shot labels, comma-separated (default: the page's).")
    args = parser.parse_args()
    if not args.url and not (args.model_name_or_path and args.index):
        parser.error("give --url, or --model_name_or_path and --index")
    if args.clip is None and args.index is None:
        parser.error("give --clip (or --index: its first clip is used)")
    missing = browser_missing()
    if missing:
        parser.error(missing)
    clip = (args.clip or first_clip(args.index)).resolve()
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        url = args.url
        if url is None:
            serve = ["--model_name_or_path", args.model_name_or_path, "--index", args.index]
            env = {"PYTHONPATH": str(REPO_ROOT)}  # paths given are the caller's: served from its folder
            url = stack.enter_context(AppServer(serve, scratch / "app.log", cwd=Path.cwd(), env=env)).url
        browser = stack.enter_context(Browser(scratch / "profile", scratch / "chromedriver.log"))
        shots = screenshot_tabs(
            DemoPage(browser.driver, url), args.screenshots, args.query, clip, args.labels
        )
    for tab, path in shots.items():
        print(f"{tab}: {path}")


if __name__ == "__main__":
    main()
