"""The files of a Hugging Face Space that serves a pushed model with the demo app (``supclap-app``).

``write_space_files(folder, model_repo_id)`` writes what a Gradio Space runs as it is:

- ``app.py``: the repository's top-level ``app.py`` (:func:`app_source`), naming the model to serve;
- ``requirements.txt``: the package's own requirements (the Space's SDK provides Gradio);
- ``README.md``: the Space's metadata (``sdk: gradio``, ``app_file``, ``models`` linking the model);
- ``modeling_supclap/``: this package's source, so the Space runs the code the model was trained and
  pushed with (it is not on PyPI).

``hub.push_output_folder(..., space_id=...)`` (``supclap-push --hub_space_id``) pushes them next to the model
and links the Space from the model card.
"""

from __future__ import annotations

import os
import shutil
from importlib import metadata
from pathlib import Path

__all__ = ["SPACE_FILES", "app_source", "space_readme", "space_requirements", "write_space_files"]

PACKAGE_DIR = Path(__file__).resolve().parent
DISTRIBUTION = "supclap"
# The Gradio the app is written and tested against, for a Space pushed from a machine without Gradio.
TESTED_GRADIO_VERSION = "6.31.0"
SPACE_FILES = ("app.py", "requirements.txt", "README.md")

_APP_SOURCE = '''\
"""The SupCLAP demo app (``python app.py``, the same as ``supclap-app``; ``--help`` lists the options).

A Hugging Face Space runs this file as it is. ``MODEL_NAME_OR_PATH`` is the model it serves when started
without ``--model_name_or_path``: ``None`` is the demo model (trained once if missing); the copy that
``supclap-push --hub_space_id`` writes into a Space names the pushed model.
"""

import sys

from modeling_supclap.cli.app import main

MODEL_NAME_OR_PATH = {model!r}

if __name__ == "__main__":
    main(sys.argv[1:], default_model_name_or_path=MODEL_NAME_OR_PATH)
'''


def app_source(model_name_or_path: str | None = None) -> str:
    """The text of ``app.py`` serving ``model_name_or_path`` by default (None: the demo model); with None it
    is the repository's own top-level ``app.py`` (tests/app check that they are equal)."""
    return _APP_SOURCE.format(model=model_name_or_path)


def space_requirements() -> str:
    """``requirements.txt``: the installed ``supclap`` distribution's requirements without extras (Gradio
    comes with the Space's SDK)."""
    try:
        requirements = metadata.requires(DISTRIBUTION) or []
    except metadata.PackageNotFoundError as error:
        raise RuntimeError(
            f"the '{DISTRIBUTION}' package is not installed, so its requirements are unknown: install it "
            "(pip install -e . in its repository) and push again"
        ) from error
    base = [requirement for requirement in requirements if "extra ==" not in requirement]
    return (
        "# The supclap package's requirements (the Space's SDK provides Gradio).\n" + "\n".join(base) + "\n"
    )


def _gradio_version() -> str:
    try:
        return metadata.version("gradio")
    except metadata.PackageNotFoundError:
        return TESTED_GRADIO_VERSION


def space_readme(model_repo_id: str, space_id: str) -> str:
    """The Space's README: its metadata (Gradio SDK and version, the app file, the model it serves) and a
    paragraph for people."""
    title = space_id.split("/")[-1][:30]
    return f"""---
title: {title}
emoji: 🔊
colorFrom: indigo
colorTo: gray
sdk: gradio
sdk_version: {_gradio_version()}
app_file: app.py
pinned: false
license: apache-2.0
models:
- {model_repo_id}
tags:
- supclap
- clap
- audio-text-retrieval
- zero-shot-audio-classification
short_description: Search sounds by text, classify a clip, find similar sounds
---

# {title}

The [SupCLAP](https://arxiv.org/abs/2509.21033) model
[{model_repo_id}](https://huggingface.co/{model_repo_id}) in the `supclap-app` demo: type a description
and hear the clips that match it, upload or record a clip and see how likely each label is (zero-shot), or
find the clips that sound like it.

Written by `supclap-push --hub_space_id {space_id}`; `modeling_supclap/` is the `supclap` package's
source it was pushed with. Locally: `pip install -e ".[app]"` in the package's repository, then
`supclap-app --model_name_or_path {model_repo_id}`.
"""


def write_space_files(folder: str | os.PathLike, model_repo_id: str, space_id: str) -> Path:
    """Write the Space's files for ``model_repo_id`` into ``folder`` (created if missing); returns it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "app.py").write_text(app_source(model_repo_id))
    (folder / "requirements.txt").write_text(space_requirements())
    (folder / "README.md").write_text(space_readme(model_repo_id, space_id), encoding="utf-8")
    shutil.copytree(
        PACKAGE_DIR,
        folder / PACKAGE_DIR.name,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        dirs_exist_ok=True,
    )
    return folder
