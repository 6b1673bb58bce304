"""Offline, deterministic synthetic audio-caption corpus for demos and tests: the builder.

Every clip is a short sequence of 1-3 *segments* (``sounds.py``: an event type such as a beep, hum or
chirp, repeated one to three times, with a pitch, a loudness and a duration). Captions describe all of
that, in order, with several paraphrases per clip (``captions.py``; other languages ``languages.py``),
so matching audio to text needs the text tower to understand counts, order and attributes; a
bag-of-labels lookup is not enough.

The corpus is written as a standard *audiofolder* (``train/``, ``validation/``, ``test/`` with 16-bit
PCM WAVs and a ``metadata.jsonl``), readable by :func:`modeling_supclap.data.readers.load_records` and
by ``datasets.load_dataset("audiofolder", data_dir=...)``. Only numpy and soundfile are used.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

from ..files import publish_folder, temporary_sibling
from .captions import english_captions
from .languages import DEMO_LANGUAGES, ZERO_SHOT_TEMPLATES, render_caption
from .sounds import EVENT_TYPES, Segment, render_clip, sample_segments

__all__ = [
    "DEMO_CORPUS_VERSION",
    "DEMO_LANGUAGES",
    "INFO_FILE",
    "SPLITS",
    "build_demo_corpus",
    "check_demo_languages",
    "demo_class_labels",
    "is_complete_corpus",
    "read_corpus_info",
]

# Bump when the generated audio or captions change, so that cached corpora are rebuilt.
DEMO_CORPUS_VERSION = 1
SPLITS = ("train", "validation", "test")
INFO_FILE = "corpus_info.json"
# A multilingual corpus' zero-shot prompts and label names per language (--zero_shot_templates).
TEMPLATES_FILE = "zero_shot_templates.json"
# Entries a corpus folder may hold; anything else means the folder is not ours and is never deleted.
# "processors" is where build_demo_processor caches processors trained on this corpus.
_CORPUS_ENTRIES = {*SPLITS, INFO_FILE, TEMPLATES_FILE, "processors"}


def demo_class_labels() -> list[str]:
    """The event-type labels of the demo corpus (the ``label`` column), in a fixed order."""
    return list(EVENT_TYPES)


def _params(
    num_clips: int, seed: int, sampling_rate: int, clip_seconds: float, languages: tuple[str, ...]
) -> dict:
    params = {
        "version": DEMO_CORPUS_VERSION,
        "num_clips": int(num_clips),
        "seed": int(seed),
        "sampling_rate": int(sampling_rate),
        "clip_seconds": float(clip_seconds),
    }
    if languages != ("en",):  # an English corpus' parameters (and cached copies) predate languages
        params["languages"] = list(languages)
    return params


def check_demo_languages(languages: Sequence[str] | None) -> tuple[str, ...]:
    """``--demo_languages`` as a tuple of known codes (default ``("en",)``); a clear error otherwise."""
    if not languages:
        return ("en",)
    chosen = tuple(dict.fromkeys(str(code).strip().lower() for code in languages))
    unknown = [code for code in chosen if code not in DEMO_LANGUAGES]
    if unknown:
        raise ValueError(
            f"--demo_languages: no demo grammar for {unknown}; "
            f"the demo corpus speaks {', '.join(DEMO_LANGUAGES)}"
        )
    return chosen


def read_corpus_info(root: Path) -> dict | None:
    try:
        return json.loads((root / INFO_FILE).read_text())
    except (OSError, ValueError):
        return None


def is_complete_corpus(root: str | os.PathLike, **params) -> bool:
    """True if ``root`` holds a finished corpus; with ``params``, also built with exactly those."""
    info = read_corpus_info(Path(root))
    if info is None or info.get("version") != DEMO_CORPUS_VERSION:
        return False
    if any(not (Path(root) / split / "metadata.jsonl").is_file() for split in SPLITS):
        return False
    return all(info.get(k) == v for k, v in params.items())


def _split_indices(num_clips: int, seed: int) -> dict[str, np.ndarray]:
    order = np.random.default_rng([seed, 10**6]).permutation(num_clips)
    n_val = max(1, round(0.1 * num_clips))
    n_test = max(1, round(0.1 * num_clips))
    return {
        "train": np.sort(order[n_val + n_test :]),
        "validation": np.sort(order[:n_val]),
        "test": np.sort(order[n_val : n_val + n_test]),
    }


def _translated_captions(
    language: str, seed: int, index: int, segments: list[Segment], wanted: int
) -> list[str]:
    """``wanted`` paraphrases in ``language``, from its own generator (English draws stay as they were)."""
    rng = np.random.default_rng([seed, index, 1 + DEMO_LANGUAGES.index(language)])
    captions: list[str] = []
    for _ in range(50 * wanted):
        caption = render_caption(language, rng, segments)
        if caption.rstrip(".。") not in {c.rstrip(".。") for c in captions}:
            captions.append(caption)
        if len(captions) == wanted:
            return captions
    while len(captions) < wanted:  # a grammar with fewer paraphrases than wanted (not the case here)
        captions.append(render_caption(language, rng, segments))
    return captions


def _make_clip(
    index: int, seed: int, sr: int, clip_seconds: float, languages: tuple[str, ...] = ("en",)
) -> tuple[np.ndarray, list[str] | list[dict[str, str]], str]:
    # One generator per clip: a clip depends only on (seed, index), not on build order or split sizes.
    rng = np.random.default_rng([seed, index])
    segments, gaps = sample_segments(rng, clip_seconds)
    audio, energies = render_clip(rng, segments, gaps, sr, clip_seconds)
    captions = english_captions(rng, segments)
    # The label is the dominant (most energetic) segment: what a one-word classifier should hear.
    label = segments[int(np.argmax(energies))].label
    if languages == ("en",):
        return audio, captions, label
    # Several languages: caption k in every language describes the clip alike, as {language: text}.
    by_language = {
        lang: captions if lang == "en" else _translated_captions(lang, seed, index, segments, len(captions))
        for lang in languages
    }
    return audio, [{lang: by_language[lang][k] for lang in languages} for k in range(len(captions))], label


def _remove_stale_tmp_dirs(root: Path) -> None:
    """Delete temporary build folders left by killed builds (whose process no longer exists)."""
    for tmp in root.parent.glob(f".{root.name}.build-*"):
        try:
            pid = int(tmp.name.split("-")[-2])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except (ValueError, IndexError, PermissionError, OSError):
            continue


def build_demo_corpus(
    root: str | os.PathLike,
    num_clips: int = 2400,
    seed: int = 0,
    sampling_rate: int = 16000,
    clip_seconds: float = 2.0,
    languages: Sequence[str] | None = None,
) -> Path:
    """Build (or reuse) the synthetic audio-caption corpus in ``root`` and return ``root`` as a Path.

    Layout: ``root/{train,validation,test}/`` (about 80/10/10) with ``clip_NNNNN.wav`` files (16-bit
    PCM, mono) and a ``metadata.jsonl`` of ``{"file_name", "captions" (2-5 strings), "label"}`` rows,
    plus ``root/corpus_info.json`` (parameters, version, split sizes, labels).

    ``languages`` (of ``DEMO_LANGUAGES``; default English only): with more than English, each caption is
    a ``{language: text}`` mapping, the k-th of every language describing the clip alike, and
    ``root/zero_shot_templates.json`` holds a prompt and the label names per language.

    The result is a pure function of the arguments. If ``root`` already holds a complete corpus built
    with the same arguments, nothing is done. Otherwise the corpus is written into a temporary sibling
    folder, ``corpus_info.json`` last, and renamed into place, so an interrupted build never leaves a
    folder that looks complete. An existing ``root`` is only replaced if it is empty or looks like a
    (stale or partial) demo corpus; a folder with other content raises ``ValueError``.
    """
    root = Path(root).absolute()
    if num_clips < 3:
        raise ValueError(f"num_clips must be >= 3 (one clip per split at least), got {num_clips}")
    if sampling_rate < 8000:
        raise ValueError(f"sampling_rate must be >= 8000 Hz, got {sampling_rate}")
    if clip_seconds < 0.5:
        raise ValueError(f"clip_seconds must be >= 0.5, got {clip_seconds}")
    languages = check_demo_languages(languages)
    params = _params(num_clips, seed, sampling_rate, clip_seconds, languages)
    if is_complete_corpus(root, **params):
        return root
    if root.exists():
        if not root.is_dir():
            raise ValueError(f"{root} exists and is not a folder")
        foreign = sorted(p.name for p in root.iterdir() if p.name not in _CORPUS_ENTRIES)
        if foreign:
            raise ValueError(
                f"{root} exists and does not look like a demo corpus (it holds {foreign[:5]}); "
                "refusing to overwrite it. Pick an empty or new folder."
            )

    root.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp_dirs(root)
    tmp = temporary_sibling(root, "build")
    try:
        splits = _split_indices(num_clips, seed)
        for split, indices in splits.items():
            split_dir = tmp / split
            split_dir.mkdir()
            rows = []
            for i in indices.tolist():
                audio, captions, label = _make_clip(i, seed, sampling_rate, clip_seconds, languages)
                file_name = f"clip_{i:05d}.wav"
                sf.write(split_dir / file_name, audio, sampling_rate, subtype="PCM_16", format="WAV")
                rows.append({"file_name": file_name, "captions": captions, "label": label})
            with open(split_dir / "metadata.jsonl", "w", encoding="utf-8") as f:
                for row in rows:
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
        if languages != ("en",):
            templates = {lang: ZERO_SHOT_TEMPLATES[lang] for lang in languages}
            (tmp / TEMPLATES_FILE).write_text(json.dumps(templates, ensure_ascii=False, indent=2) + "\n")
        info = {
            **params,
            "splits": {split: len(ix) for split, ix in splits.items()},
            "labels": demo_class_labels(),
        }
        # Written last: its presence is what marks the corpus as complete.
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
        # Another process (e.g. another rank) may have finished the same corpus meanwhile: keep theirs.
        publish_folder(tmp, root, keep_existing=is_complete_corpus(root, **params))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root
