"""Resumable, atomic training checkpoints.

A checkpoint ``checkpoint-<step>/`` holds everything a resumed run needs to continue as if it
had never stopped:

* ``model.safetensors`` + ``config.json`` (+ code): a loadable ``save_pretrained`` folder;
* ``optimizer.pt`` / ``scheduler.pt``: state dicts, read back with ``torch.load(weights_only=True)``;
* ``rng_state_<rank>.pt``: torch (CPU and CUDA) RNG states as tensors, numpy/python RNG as lists;
* ``data_state_<rank>.pt``: each process's position in its training source (streams keep their own);
* ``trainer_state.json``: the :class:`~modeling_supclap.training.state.TrainState` (step, epoch,
  position in the epoch and the data source's own position, best score, history, skipped counts);
* ``COMPLETE``: written last. A folder without it was cut short and is never resumed from.

Every process writes into ``checkpoint-<step>.tmp``; after a barrier the main process writes
``COMPLETE`` and renames the folder into place, so a ``kill -9`` at any moment leaves either the
previous checkpoints untouched or a ``.tmp`` folder that is ignored (and later removed).
"""

from __future__ import annotations

import inspect
import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from ..files import fsync_tree, publish_folder
from .state import TrainState

COMPLETE_MARKER = "COMPLETE"
STATE_FILE = "trainer_state.json"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
REQUIRED_FILES = (
    "model.safetensors",
    "config.json",
    "optimizer.pt",
    "scheduler.pt",
    STATE_FILE,
    COMPLETE_MARKER,
)


class CheckpointError(RuntimeError):
    """A checkpoint folder that cannot be resumed from (missing, partial or corrupt)."""


def rng_state() -> dict[str, Any]:
    numpy_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]],
        "python": _to_lists(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _to_lists(value: Any) -> Any:
    return [_to_lists(v) for v in value] if isinstance(value, (tuple, list)) else value


def _to_tuples(value: Any) -> Any:
    return tuple(_to_tuples(v) for v in value) if isinstance(value, list) else value


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))
    random.setstate(_to_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_step(path: Path) -> int | None:
    match = _CHECKPOINT_RE.match(path.name)
    return int(match.group(1)) if match else None


def list_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints in ``output_dir``, oldest first."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and checkpoint_step(p) is not None]
    complete = [p for p in found if (p / COMPLETE_MARKER).exists()]
    return sorted(complete, key=lambda p: checkpoint_step(p))


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    checkpoints = list_checkpoints(output_dir)
    return checkpoints[-1] if checkpoints else None


def remove_checkpoints(output_dir: str | os.PathLike) -> None:
    """Remove every checkpoint folder of ``output_dir`` (complete, partial, being replaced) and its ``best/``
    copy."""
    root = Path(output_dir)
    stale = [*root.glob("checkpoint-*"), *root.glob(".checkpoint-*.old-*"), root / "best"]
    for folder in [path for path in stale if path.is_dir()]:
        shutil.rmtree(folder)


def validate_checkpoint(path: str | os.PathLike, world_size: int = 1) -> Path:
    """Raise :class:`CheckpointError` naming what is wrong with ``path``."""
    folder = Path(path)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder {folder} does not exist")
    missing = [name for name in REQUIRED_FILES if not (folder / name).exists()]
    if COMPLETE_MARKER in missing:
        raise CheckpointError(
            f"checkpoint {folder} is incomplete (no {COMPLETE_MARKER} marker: the run stopped while writing "
            "it); resume from an earlier checkpoint or use --resume_from_checkpoint latest"
        )
    if missing:
        raise CheckpointError(f"checkpoint {folder} is missing {', '.join(missing)}")
    for rank in range(world_size):
        if not (folder / f"rng_state_{rank}.pt").exists():
            raise CheckpointError(
                f"checkpoint {folder} has no rng_state_{rank}.pt: it was written by fewer processes than the "
                f"{world_size} resuming it"
            )
    return folder


def save_checkpoint(
    accelerator,
    model: torch.nn.Module,
    optimizer,
    scheduler,
    state: TrainState,
    output_dir: str | os.PathLike,
    save_total_limit: int | None = None,
    data_state: dict[str, Any] | None = None,
) -> Path:
    """Write ``checkpoint-<state.step>`` atomically (collective: every process must call it).

    ``data_state``: this process's ``TrainingSource.state_dict()``.
    """
    root = Path(output_dir)
    final = root / f"checkpoint-{state.step}"
    # A fixed name (not a random temporary one): every process writes its RNG state into it.
    tmp = root / f"checkpoint-{state.step}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    failure: OSError | None = None
    try:
        torch.save(rng_state(), tmp / f"rng_state_{accelerator.process_index}.pt")
        torch.save(data_state or {}, tmp / f"data_state_{accelerator.process_index}.pt")
        if accelerator.is_main_process:
            save_training_weights(accelerator.unwrap_model(model), tmp)
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
            torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
            (tmp / STATE_FILE).write_text(json.dumps(state.to_dict(), indent=2))
            fsync_tree(tmp)
    except OSError as error:  # a full disk, a quota, a vanished mount: every process must hear of it
        failure = error
    if _any_process_failed(accelerator, failure is not None):
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        raise _write_error(root, final, failure, model, optimizer)
    if accelerator.is_main_process:
        (tmp / COMPLETE_MARKER).write_text("ok\n")
        publish_folder(tmp, final)  # re-saving the same step (after a resume) replaces it
        _rotate(root, save_total_limit, keep=final)
    accelerator.wait_for_everyone()
    return final


def save_training_weights(model: torch.nn.Module, folder: Path) -> None:
    """``save_pretrained`` with the tensors under the names the model holds them by, for
    :func:`load_training_weights` (checkpoints, ``best/``). By default transformers 5 writes some towers'
    weights back under their old names (AST's ``attention.attention.query``): ``from_pretrained`` maps them
    forward again, a plain ``load_state_dict`` would not find them."""
    from transformers import PreTrainedModel

    options = {"safe_serialization": True}
    if (
        isinstance(model, PreTrainedModel)
        and "save_original_format" in inspect.signature(PreTrainedModel.save_pretrained).parameters
    ):
        options["save_original_format"] = False
    model.save_pretrained(folder, **options)


def load_training_weights(model: torch.nn.Module, folder: Path) -> None:
    """The weights :func:`save_training_weights` wrote into ``model``; ``CheckpointError`` if they do not
    match it (rather than keeping some of the model's own weights without a word)."""
    weights = load_file(folder / "model.safetensors")
    missing, unexpected = model.load_state_dict(weights, strict=False)
    # A tied weight (T5's encoder.embed_tokens is its shared embedding) is saved once, under one name: the
    # other name is loaded with it.
    state = model.state_dict()
    loaded = {state[name].data_ptr() for name in weights if name in state}
    missing = [k for k in missing if not k.endswith("position_ids") and state[k].data_ptr() not in loaded]
    if unexpected or missing:
        raise CheckpointError(
            f"checkpoint {folder}/model.safetensors does not match the model: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )


def _any_process_failed(accelerator, failed: bool) -> bool:
    """Whether any process failed (a collective: every process learns it, none waits forever)."""
    if accelerator.num_processes == 1:
        return failed
    flag = torch.tensor([1.0 if failed else 0.0], device=accelerator.device)
    return bool(accelerator.reduce(flag, reduction="sum").item() > 0)


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _write_error(root: Path, final: Path, failure: OSError | None, model, optimizer) -> CheckpointError:
    """What went wrong writing ``final``, how much room a checkpoint needs, and what is still safe."""
    previous = latest_checkpoint(root)
    if previous is not None:
        needed, basis = _folder_bytes(previous), f"the size of {previous.name}"
    else:  # weights + optimizer state (AdamW: two moments) in their own dtypes
        weights = sum(p.numel() * p.element_size() for p in model.parameters())
        needed, basis = 3 * weights, "weights and AdamW state"
    free = shutil.disk_usage(root).free
    reason = (
        f"{type(failure).__name__}: {failure}" if failure is not None else "another process could not write"
    )
    kept = (
        f"{previous} is intact and --resume_from_checkpoint latest resumes from it"
        if previous is not None
        else "no earlier checkpoint exists"
    )
    return CheckpointError(
        f"could not write {final} ({reason}). A checkpoint needs about {needed / 2**20:.1f} MiB ({basis}); "
        f"{free / 2**20:.1f} MiB are free on {root}. Free some space (or lower --save_total_limit) and "
        f"resume: {kept}."
    )


def _rotate(root: Path, limit: int | None, keep: Path) -> None:
    # Left by runs killed while writing (.tmp) or while replacing a checkpoint (.old-*).
    for stale in [*root.glob("checkpoint-*.tmp"), *root.glob(".checkpoint-*.old-*")]:
        if stale != keep:
            shutil.rmtree(stale, ignore_errors=True)
    if not limit or limit < 1:
        return
    checkpoints = list_checkpoints(root)
    for old in checkpoints[: max(0, len(checkpoints) - limit)]:
        if old != keep:
            shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(
    path: str | os.PathLike, accelerator, model: torch.nn.Module, optimizer, scheduler
) -> tuple[TrainState, dict[str, Any]]:
    """Restore model, optimizer, scheduler and this process's RNG; return the trainer state and this
    process's data-source state (``{}`` for checkpoints written before sources kept one)."""
    folder = validate_checkpoint(path, accelerator.num_processes)
    try:
        load_training_weights(accelerator.unwrap_model(model), folder)
        optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
        scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=True))
        set_rng_state(torch.load(folder / f"rng_state_{accelerator.process_index}.pt", weights_only=True))
        state = TrainState.from_dict(json.loads((folder / STATE_FILE).read_text()))
        data_file = folder / f"data_state_{accelerator.process_index}.pt"
        data_state = torch.load(data_file, weights_only=True) if data_file.exists() else {}
    except CheckpointError:
        raise
    except Exception as error:  # corrupt bytes, truncated files, wrong JSON
        raise CheckpointError(
            f"checkpoint {folder} could not be read ({type(error).__name__}: {error})"
        ) from error
    return state, data_state
