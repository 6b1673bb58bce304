"""Reading a torch ``.pt`` checkpoint safely: the file's kind checked first, then ``weights_only`` unpickling.

A ``.pt`` file is a pickle: ``torch.load`` with ``weights_only=False`` runs whatever code it names. Training
checkpoints of LAION-CLAP are not loadable with ``weights_only=True`` as they are, because the learning
rate in their optimizer state is a ``numpy.float64`` (``training/scheduler.py`` computes it with
``np.cos``). The reader allows exactly the numpy globals such a scalar needs (its reconstructor,
``np.dtype`` and the float64 dtype class) and nothing else, and memory-maps the file so that the optimizer
moments (two thirds of a released checkpoint) are never read.

Before unpickling, the header says what the file is: a safetensors file (``torch.load`` of torch 2.13
would load one, as a flat dict), a truncated or corrupt zip archive (every member's CRC is checked: 1.4 s
for 1.9 GB), or something else entirely. Each gets one message.
"""

from __future__ import annotations

import os
import re
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .report import ConversionError

__all__ = ["file_kind", "load_torch_checkpoint"]

_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTOCOL = b"\x80"


def file_kind(path: str | os.PathLike) -> str:
    """``"zip"`` (torch >= 1.6 ``torch.save``), ``"pickle"`` (the legacy format), ``"safetensors"``,
    ``"empty"`` or ``"unknown"``, from the first bytes."""
    with open(path, "rb") as handle:
        head = handle.read(16)
    if not head:
        return "empty"
    if head.startswith(_ZIP_MAGIC):
        return "zip"
    # safetensors: an 8-byte little-endian header length, then the JSON header itself. Checked before the
    # pickle opcode: a header length whose low byte is 0x80 starts like a pickle.
    if len(head) >= 9 and head[8:9] == b"{":
        (header_length,) = struct.unpack("<Q", head[:8])
        if 0 < header_length <= os.path.getsize(path) - 8:
            return "safetensors"
    if head.startswith(_PICKLE_PROTOCOL):
        return "pickle"
    return "unknown"


def _numpy_scalar_globals() -> list[Any]:
    """What unpickling a ``numpy.float64`` needs, under the name numpy 1 pickles carry and numpy 2's."""
    try:
        from numpy._core.multiarray import scalar  # numpy >= 2
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import scalar
    return [
        (scalar, "numpy.core.multiarray.scalar"),
        (scalar, "numpy._core.multiarray.scalar"),
        np.dtype,
        type(np.dtype(np.float64)),
    ]


def load_torch_checkpoint(path: str | os.PathLike) -> Any:
    """The object a ``.pt`` file holds, unpickled with ``weights_only=True`` (no code of the file runs).

    Raises ``FileNotFoundError`` for a missing file and :class:`ConversionError` (a ``ValueError``) for a file
    that is not a readable torch checkpoint, each with one message saying what the file is.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    kind = file_kind(path)
    if kind == "empty":
        raise ConversionError(f"{path} is empty (0 bytes)")
    if kind == "safetensors":
        raise ConversionError(
            f"{path} is a safetensors file, not a LAION-CLAP .pt checkpoint: a transformers/SupClap model "
            "needs no conversion (pass its folder as --model_name_or_path)"
        )
    if kind == "unknown":
        raise ConversionError(
            f"{path} is not a torch checkpoint (its first bytes are neither zip nor pickle)"
        )
    if kind == "zip":
        try:
            with zipfile.ZipFile(path) as archive:
                corrupt = archive.testzip()
        except (zipfile.BadZipFile, OSError, EOFError) as error:
            raise ConversionError(f"{path} is truncated or corrupt ({error}): download it again") from error
        if corrupt is not None:
            raise ConversionError(f"{path} is corrupt (CRC mismatch in {corrupt}): download it again")
    try:
        with torch.serialization.safe_globals(_numpy_scalar_globals()):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=kind == "zip")
    except (
        Exception
    ) as error:  # torch raises UnpicklingError, RuntimeError or EOFError depending on the damage
        message = str(error)
        unsupported = re.search(r"Unsupported global: GLOBAL (\S+)", message)
        if unsupported:
            raise ConversionError(
                f"{path} holds a Python object other than tensors and numbers ({unsupported.group(1)}), "
                "which is not loaded because unpickling it could run code. If you trust the file, load it "
                "yourself "
                "(torch.load with weights_only=False) and save only its state dict: "
                "torch.save({'state_dict': checkpoint['state_dict']}, 'clean.pt')"
            ) from error
        first_line = (message.strip().splitlines() or [""])[0][:300]
        raise ConversionError(
            f"{path} cannot be read as a torch checkpoint ({type(error).__name__}: {first_line})"
        ) from error
