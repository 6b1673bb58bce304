"""Every command line is parsed here, from the argument dataclasses (``HfArgumentParser``).

One vocabulary for every command: transformers' ``TrainingArguments`` names wherever one exists, snake_case
everywhere (the hyphenated spelling is accepted too). A renamed flag keeps its old spelling in its field's
``aliases`` metadata: it works, and :func:`parse_arguments` warns once naming the new flag.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

__all__ = ["deprecated_aliases", "parse_arguments"]


def deprecated_aliases(*dataclass_types: type) -> dict[str, str]:
    """Old flag spelling -> current one, from the ``aliases`` metadata of the fields."""
    renamed: dict[str, str] = {}
    for dataclass_type in dataclass_types:
        for f in fields(dataclass_type):
            for alias in f.metadata.get("aliases", []):
                renamed[alias] = f"--{f.name}"
    return renamed


def parse_arguments(
    dataclass_types: Sequence[type], argv: Sequence[str] | None, **parser_kwargs: Any
) -> tuple:
    """``HfArgumentParser(dataclass_types).parse_args_into_dataclasses(argv)``, warning on old spellings."""
    from transformers import HfArgumentParser

    argv = list(sys.argv[1:] if argv is None else argv)
    renamed = deprecated_aliases(*dataclass_types)
    for flag in argv:
        old = flag.split("=", 1)[0]
        if old in renamed:
            logging.getLogger(__name__).warning("%s is deprecated: use %s", old, renamed[old])
    parser = HfArgumentParser(list(dataclass_types), **parser_kwargs)
    return tuple(parser.parse_args_into_dataclasses(args=argv))
