"""What a conversion did with every tensor: the report ``supclap-convert`` prints and saves with the model.

Every tensor of the source checkpoint is either *mapped* (copied, possibly split, into named tensors of the
converted model) or *unused* (with the reason); every tensor of the converted model that no source tensor
provides is *left initialised* (with the reason). Nothing is dropped silently. Deterministic buffers that
both sides hold (index tables, position ids) are *verified* equal as well as copied, or, where the converted
model builds the buffer itself and does not save it (``BertModel``'s position ids), verified and unused.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["REPORT_FILE", "ConversionError", "ConversionReport"]

REPORT_FILE = "conversion_report.json"


class ConversionError(ValueError):
    """The checkpoint cannot be converted as asked (wrong file, architecture or flags): one message, why.

    A ``ValueError``, so the command line ends with that message and exit status 2 (``cli/errors.py``).
    """


def _family(key: str) -> str:
    """A tensor name with its layer/block numbers replaced by N (one summary line per family)."""
    return re.sub(r"(?<=\.)\d+(?=\.)", "N", key)


@dataclass
class ConversionReport:
    """The record of one conversion (``conversion_report.json``).

    Attributes:
        source: the checkpoint: ``file`` (its name only, never a local path), ``sha256``, ``bytes``,
            ``format`` and what else the file says about itself (``epoch``, ``name``).
        architecture: what the tensors say the model is (towers, their sizes, the fusion type).
        config: the converted model's class (``model_class``) and the configuration fields inferred from the
            tensors.
        processor: the preprocessing written with the model, and the front-end tensors it was checked against.
        mapped: ``[source key, [target keys]]`` (several targets: a split, e.g. a fused qkv).
        verified: ``[source key, target key]``: deterministic buffers compared equal (also in ``mapped``, or
            in ``unused`` where the model rebuilds the buffer without saving it).
        unused: ``[source key, reason]``: source tensors the converted model has no place for.
        left_initialised: ``[target key, reason]``: target tensors no source tensor provides.
    """

    source: dict[str, Any]
    architecture: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)
    processor: dict[str, Any] = field(default_factory=dict)
    mapped: list[tuple[str, list[str]]] = field(default_factory=list)
    verified: list[tuple[str, str]] = field(default_factory=list)
    unused: list[tuple[str, str]] = field(default_factory=list)
    left_initialised: list[tuple[str, str]] = field(default_factory=list)

    @property
    def num_target_tensors_mapped(self) -> int:
        return sum(len(targets) for _, targets in self.mapped)

    def summary(self) -> str:
        """The report for people: counts, then one line per family of unused and left-initialised tensors."""
        architecture = self.architecture
        lines = [
            f"{self.source.get('file')} (sha256 {str(self.source.get('sha256'))[:16]}...): "
            f"{architecture.get('amodel')} + {architecture.get('tmodel')}, "
            f"{architecture.get('fusion') or 'unfused'}"
            + (f" -> {self.config['model_class']}" if self.config.get("model_class") else ""),
            f"mapped: {len(self.mapped)} source tensors -> {self.num_target_tensors_mapped} model tensors "
            f"({len(self.verified)} deterministic buffers verified equal)",
            f"unused: {len(self.unused)} source tensors",
        ]
        lines += _families(self.unused)
        lines.append(f"left initialised: {len(self.left_initialised)} model tensors")
        lines += _families(self.left_initialised)
        if self.processor:
            settings = ", ".join(
                f"{k}={v}" for k, v in self.processor.items() if k not in ("front_end_check", "class")
            )
            lines.append(f"processor: {self.processor.get('class')} ({settings})")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``conversion_report.json`` into ``folder``; returns its path."""
        path = Path(folder) / REPORT_FILE
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return path


def _families(entries: list[tuple[str, str]]) -> list[str]:
    counts = Counter((_family(key), reason) for key, reason in entries)
    lines = []
    for (family, reason), count in counts.items():
        if family.endswith(".bias") and (family[: -len("bias")] + "weight", reason) in counts:
            continue  # said with its weight
        if family.endswith(".weight") and (twin := (family[: -len("weight")] + "bias", reason)) in counts:
            family, count = family[: -len("weight")] + "{weight,bias}", count + counts[twin]
        lines.append(f"  {count:4d} x {family}: {reason}")
    return lines
