"""Every command line is parsed here, from the argument dataclasses (``HfArgumentParser``).

One vocabulary for every command: transformers' ``TrainingArguments`` names wherever one exists, snake_case
everywhere (the hyphenated spelling is accepted too). A renamed flag keeps its old spelling in its field's
``aliases`` metadata: it works, and :func:`parse_arguments` warns once naming the new flag.

``--args_file FILE`` (every command) reads flags from a file, a recipe such as ``recipes/supclap_paper.args``:
shell-like words, ``#`` comments; the file's flags stand where ``--args_file`` stands, so flags after it
override them.
"""

from __future__ import annotations

import logging
import shlex
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

__all__ = ["ARGS_FILE_FLAG", "deprecated_aliases", "expand_args_files", "parse_arguments"]

ARGS_FILE_FLAG = "--args_file"
_ARGS_FILE_HELP = (
    f"{ARGS_FILE_FLAG} FILE: read flags from FILE (a recipe; shell-like words, # comments) where it stands; "
    "flags after it override the file's."
)


def deprecated_aliases(*dataclass_types: type) -> dict[str, str]:
    """Old flag spelling -> current one, from the ``aliases`` metadata of the fields."""
    renamed: dict[str, str] = {}
    for dataclass_type in dataclass_types:
        for f in fields(dataclass_type):
            for alias in f.metadata.get("aliases", []):
                renamed[alias] = f"--{f.name}"
    return renamed


def expand_args_files(argv: Sequence[str]) -> list[str]:
    """``argv`` with each ``--args_file FILE`` (or ``--args_file=FILE``) replaced by the flags in FILE.

    Raises ``ValueError`` naming the file when it is missing, unreadable or not shell-like words, or when the
    flag has no file; a file may not include another.
    """
    expanded: list[str] = []
    words = iter(argv)
    for word in words:
        if word != ARGS_FILE_FLAG and not word.startswith(ARGS_FILE_FLAG + "="):
            expanded.append(word)
            continue
        path = word.partition("=")[2] if "=" in word else next(words, "")
        if not path:
            raise ValueError(f"{ARGS_FILE_FLAG} needs a file")
        try:
            flags = shlex.split(Path(path).read_text(encoding="utf-8"), comments=True)
        except (OSError, UnicodeDecodeError, ValueError) as error:
            raise ValueError(f"{ARGS_FILE_FLAG} {path}: cannot read its flags ({error})") from error
        if any(f == ARGS_FILE_FLAG or f.startswith(ARGS_FILE_FLAG + "=") for f in flags):
            raise ValueError(f"{ARGS_FILE_FLAG} {path}: a flags file cannot include another")
        expanded.extend(flags)
    return expanded


def parse_arguments(
    dataclass_types: Sequence[type], argv: Sequence[str] | None, **parser_kwargs: Any
) -> tuple:
    """``HfArgumentParser(dataclass_types).parse_args_into_dataclasses(argv)``, warning on old spellings;
    ``--args_file`` expanded first (:func:`expand_args_files`; a bad file is a usage error, exit 2)."""
    from transformers import HfArgumentParser

    parser = HfArgumentParser(list(dataclass_types), epilog=_ARGS_FILE_HELP, **parser_kwargs)
    try:
        argv = expand_args_files(sys.argv[1:] if argv is None else argv)
    except ValueError as error:
        parser.error(str(error))
    renamed = deprecated_aliases(*dataclass_types)
    for flag in argv:
        old = flag.split("=", 1)[0]
        if old in renamed:
            logging.getLogger(__name__).warning("%s is deprecated: use %s", old, renamed[old])
    # look_for_args_file=False: transformers would silently read a "<script>.args" file beside the script.
    return tuple(parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False))
