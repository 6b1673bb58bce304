"""Offline, deterministic synthetic audio-caption corpus for demos and tests.

Every clip is a short sequence of 1-3 *segments*. A segment is one event type (beep, hum, chirp, ...)
repeated one to three times, with a pitch (low/high), a loudness (quiet/loud) and a duration
(short/long). Captions describe all of that, in order, with several paraphrases per clip (synonyms,
adjective orders, "X then Y" / "Y follows X" sentence frames), so matching audio to text needs the text
tower to understand counts, order and attributes; a bag-of-labels lookup is not enough.

The corpus is written as a standard *audiofolder* (``train/``, ``validation/``, ``test/`` with 16-bit
PCM WAVs and a ``metadata.jsonl``), readable by :func:`modeling_supclap.data.loading.load_records` and by
``datasets.load_dataset("audiofolder", data_dir=...)``. Only numpy and soundfile are used.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from ..files import publish_folder, temporary_sibling
from .demo_languages import DEMO_LANGUAGES, ZERO_SHOT_TEMPLATES, render_caption

__all__ = [
    "DEMO_CORPUS_VERSION",
    "DEMO_LANGUAGES",
    "SPLITS",
    "build_demo_corpus",
    "demo_class_labels",
    "is_complete_corpus",
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


# --------------------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------------------

# label -> list of (singular, plural) nouns used in captions. Labels are the zero-shot class names
# ("This is a sound of {label}."), so they are natural, mutually distinct phrases.
_NOUNS: dict[str, list[tuple[str, str]]] = {
    "beep": [("beep", "beeps"), ("electronic beep", "electronic beeps"), ("beep tone", "beep tones")],
    "hum": [("hum", "hums"), ("humming drone", "humming drones")],
    "chirp": [("chirp", "chirps"), ("sweep", "sweeps")],
    "click train": [("click train", "click trains"), ("clicking sound", "clicking sounds")],
    "noise burst": [
        ("noise burst", "noise bursts"),
        ("burst of noise", "bursts of noise"),
        ("hiss", "hisses"),
    ],
    "buzz": [("buzz", "buzzes"), ("buzzing tone", "buzzing tones")],
    "knock": [("knock", "knocks"), ("knocking sound", "knocking sounds")],
    "whistle": [("whistle", "whistles"), ("whistling tone", "whistling tones")],
    "bell ring": [("bell ring", "bell rings"), ("bell chime", "bell chimes")],
    "dog-like bark": [
        ("dog-like bark", "dog-like barks"),
        ("bark", "barks"),
        ("barking sound", "barking sounds"),
    ],
}
_LABELS = list(_NOUNS)

_COUNT_WORDS = {1: ["a", "one", "a single"], 2: ["two", "a pair of"], 3: ["three", "a series of three"]}
_PITCH_WORDS = {"low": ["low", "low-pitched", "deep"], "high": ["high", "high-pitched"]}
_LOUD_WORDS = {"quiet": ["quiet", "soft", "faint"], "loud": ["loud", "strong"]}
_DUR_WORDS = {"short": ["short", "brief", "quick"], "long": ["long", "sustained", "drawn-out"]}
_DIR_WORDS = {"up": ["rising", "upward"], "down": ["falling", "downward"]}

# Sentence frames. {sN} are segment phrases; {is1}/{follows2} agree in number with segment 1 / 2.
_FRAMES: dict[int, list[str]] = {
    1: ["{s1}", "the sound of {s1}", "{s1} can be heard", "a recording of {s1}", "you hear {s1}"],
    2: [
        "{s1}, then {s2}",
        "{s1} followed by {s2}",
        "first {s1}, then {s2}",
        "{s2} {follows2} {s1}",
        "{s1} {is1} followed by {s2}",
        "{s2} after {s1}",
        "{s2}, preceded by {s1}",
    ],
    3: [
        "{s1}, then {s2}, then {s3}",
        "{s1} followed by {s2} and then {s3}",
        "first {s1}, next {s2}, and finally {s3}",
        "{s1}, {s2} and finally {s3}",
        "{s3} at the end, after {s1} and {s2}",
        "{s1}, then {s2}, followed by {s3}",
    ],
}


def demo_class_labels() -> list[str]:
    """The event-type labels of the demo corpus (the ``label`` column), in a fixed order."""
    return list(_LABELS)


# --------------------------------------------------------------------------------------------------
# Clip specification
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Segment:
    label: str
    count: int  # repetitions: 1..3
    pitch: str  # "low" | "high"
    loudness: str  # "quiet" | "loud"
    duration: str  # "short" | "long"
    direction: str  # "up" | "down"; only rendered for chirps
    unit_s: float  # length of one repetition in seconds
    gap_s: float  # silence between repetitions

    @property
    def total_s(self) -> float:
        return self.count * self.unit_s + (self.count - 1) * self.gap_s


def _sample_segments(rng: np.random.Generator, clip_seconds: float) -> tuple[list[_Segment], list[float]]:
    """Draw 1-3 segments (distinct event types) plus the gaps between them, fitting in the clip."""
    # Durations are absolute (so "short" means the same thing in every clip) but shrink for clips
    # shorter than 2 s so that three segments of three long repetitions can still fit.
    scale = min(1.0, clip_seconds / 2.0)
    budget = clip_seconds - 0.1 * scale  # keep a little room for the random onset
    for _ in range(100):
        n = int(rng.choice([1, 2, 3], p=[0.3, 0.4, 0.3]))
        labels = rng.choice(len(_LABELS), size=n, replace=False)
        segments = []
        for li in labels:
            duration = "short" if rng.random() < 0.5 else "long"
            lo, hi = (0.07, 0.10) if duration == "short" else (0.20, 0.28)
            segments.append(
                _Segment(
                    label=_LABELS[int(li)],
                    count=int(rng.integers(1, 4)),
                    pitch="low" if rng.random() < 0.5 else "high",
                    loudness="quiet" if rng.random() < 0.5 else "loud",
                    duration=duration,
                    direction="up" if rng.random() < 0.5 else "down",
                    unit_s=float(rng.uniform(lo, hi)) * scale,
                    gap_s=float(rng.uniform(0.04, 0.07)) * scale,
                )
            )
        gaps = [float(rng.uniform(0.08, 0.15)) * scale for _ in range(n - 1)]
        if sum(s.total_s for s in segments) + sum(gaps) <= budget:
            return segments, gaps
    # Practically unreachable for clip_seconds >= ~1 s; keeps the generator total.
    seg = _Segment(_LABELS[0], 1, "high", "loud", "short", "up", 0.07 * scale, 0.05 * scale)
    return [seg], []


# --------------------------------------------------------------------------------------------------
# Synthesis (numpy only). Each function returns a peak-normalised float64 waveform of n samples.
# --------------------------------------------------------------------------------------------------


def _ramp(n: int, sr: int, attack_s: float = 0.005, release_s: float = 0.005) -> np.ndarray:
    """Raised-cosine fade in/out, so tones start and stop without clicks."""
    env = np.ones(n)
    a = max(1, min(n // 2, int(attack_s * sr)))
    r = max(1, min(n // 2, int(release_s * sr)))
    env[:a] = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, a))
    env[n - r :] = 0.5 + 0.5 * np.cos(np.linspace(0, np.pi, r))
    return env


def _band_noise(rng: np.random.Generator, n: int, sr: int, lo: float, hi: float) -> np.ndarray:
    """White noise band-limited to [lo, hi] Hz with an FFT mask."""
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / sr)
    spec[(freqs < lo) | (freqs > hi)] = 0.0
    return np.fft.irfft(spec, n)


def _harmonics(phase: np.ndarray, f0_max: float, sr: int, amps: list[float]) -> np.ndarray:
    """Sum of harmonics of a phase track, dropping those above 0.45 * sr (no aliasing)."""
    out = np.zeros_like(phase)
    for k, a in enumerate(amps, start=1):
        if k * f0_max < 0.45 * sr:
            out += a * np.sin(k * phase)
    return out


def _pick(rng: np.random.Generator, ranges: dict[str, tuple[float, float]], pitch: str) -> float:
    lo, hi = ranges[pitch]
    return float(rng.uniform(lo, hi))


def _synth_beep(rng, n, sr, seg):
    f = _pick(rng, {"low": (350, 500), "high": (1300, 1900)}, seg.pitch)
    t = np.arange(n) / sr
    return np.sin(2 * np.pi * f * t) * _ramp(n, sr)


def _synth_hum(rng, n, sr, seg):
    f0 = _pick(rng, {"low": (90, 120), "high": (180, 240)}, seg.pitch)
    t = np.arange(n) / sr
    phase = 2 * np.pi * f0 * t + rng.uniform(0, 2 * np.pi)
    return _harmonics(phase, f0, sr, [1.0 / k for k in range(1, 9)]) * _ramp(n, sr, 0.02, 0.02)


def _synth_chirp(rng, n, sr, seg):
    lo, hi = {"low": (250.0, 700.0), "high": (1200.0, 3500.0)}[seg.pitch]
    lo *= rng.uniform(0.9, 1.1)
    hi *= rng.uniform(0.9, 1.1)
    f_start, f_end = (lo, hi) if seg.direction == "up" else (hi, lo)
    freq = f_start * (f_end / f_start) ** np.linspace(0.0, 1.0, n)  # exponential sweep
    phase = 2 * np.pi * np.cumsum(freq) / sr
    return np.sin(phase) * _ramp(n, sr)


def _synth_click_train(rng, n, sr, seg):
    rate = rng.uniform(30, 45)  # clicks per second
    fc = _pick(rng, {"low": (400, 700), "high": (3000, 4500)}, seg.pitch)
    click_n = max(8, int(0.004 * sr))
    tc = np.arange(click_n) / sr
    click = np.sin(2 * np.pi * fc * tc) * np.exp(-tc / 0.0008)
    out = np.zeros(n)
    for start in np.arange(0, n - click_n, sr / rate).astype(int):
        out[start : start + click_n] += click
    return out


def _synth_noise_burst(rng, n, sr, seg):
    band = {"low": (200.0, 800.0), "high": (2500.0, min(6000.0, 0.45 * sr))}[seg.pitch]
    return _band_noise(rng, n, sr, *band) * _ramp(n, sr, 0.01, 0.01)


def _synth_buzz(rng, n, sr, seg):
    f0 = _pick(rng, {"low": (110, 160), "high": (400, 600)}, seg.pitch)
    t = np.arange(n) / sr
    # tanh of a sine: square-ish wave whose harmonics fall off fast enough to avoid audible aliasing.
    return np.tanh(4.0 * np.sin(2 * np.pi * f0 * t)) * _ramp(n, sr)


def _synth_knock(rng, n, sr, seg):
    f = _pick(rng, {"low": (150, 250), "high": (600, 900)}, seg.pitch)
    t = np.arange(n) / sr
    tau = n / sr / 5.0  # decays over the segment, so "long" knocks ring longer
    body = np.exp(-t / tau) * (np.sin(2 * np.pi * f * t) + 0.5 * np.sin(2 * np.pi * 2.3 * f * t))
    hit = rng.standard_normal(n) * np.exp(-t / 0.003)
    return body + 0.5 * hit


def _synth_whistle(rng, n, sr, seg):
    f = _pick(rng, {"low": (900, 1200), "high": (2200, 3000)}, seg.pitch)
    t = np.arange(n) / sr
    vibrato = 1.0 + 0.02 * np.sin(2 * np.pi * rng.uniform(5, 7) * t)
    phase = 2 * np.pi * np.cumsum(f * vibrato) / sr
    breath = _band_noise(rng, n, sr, 0.8 * f, min(1.2 * f, 0.45 * sr))
    breath /= np.abs(breath).max() + 1e-9
    return (np.sin(phase) + 0.15 * breath) * _ramp(n, sr, 0.015, 0.015)


def _synth_bell_ring(rng, n, sr, seg):
    f = _pick(rng, {"low": (300, 450), "high": (900, 1300)}, seg.pitch)
    t = np.arange(n) / sr
    tau = n / sr / 3.0
    out = np.zeros(n)
    # Inharmonic partials, the higher ones decaying faster: the bell timbre.
    for ratio, amp in [(1.0, 1.0), (2.32, 0.6), (4.25, 0.35), (6.63, 0.2)]:
        if ratio * f < 0.45 * sr:
            out += amp * np.exp(-t * ratio / tau) * np.sin(2 * np.pi * ratio * f * t)
    return out * _ramp(n, sr, 0.002, 0.005)


def _synth_bark(rng, n, sr, seg):
    f0 = _pick(rng, {"low": (250, 350), "high": (550, 750)}, seg.pitch)
    t = np.arange(n) / sr
    freq = f0 * (1.0 - 0.4 * np.linspace(0.0, 1.0, n))  # pitch falls through the bark
    phase = 2 * np.pi * np.cumsum(freq) / sr
    voiced = _harmonics(phase, f0, sr, [1.0, 0.8, 0.6, 0.5, 0.3, 0.2])
    noise = _band_noise(rng, n, sr, 500.0, min(4000.0, 0.45 * sr))
    noise /= np.abs(noise).max() + 1e-9
    env = np.exp(-t / (n / sr / 3.0)) * _ramp(n, sr, 0.008, 0.01)
    return (voiced + 0.6 * noise) * env


_SYNTHS = {
    "beep": _synth_beep,
    "hum": _synth_hum,
    "chirp": _synth_chirp,
    "click train": _synth_click_train,
    "noise burst": _synth_noise_burst,
    "buzz": _synth_buzz,
    "knock": _synth_knock,
    "whistle": _synth_whistle,
    "bell ring": _synth_bell_ring,
    "dog-like bark": _synth_bark,
}
assert set(_SYNTHS) == set(_NOUNS)


def _render_clip(
    rng: np.random.Generator, segments: list[_Segment], gaps: list[float], sr: int, clip_seconds: float
) -> tuple[np.ndarray, list[float]]:
    """Place the segments at a random onset over background noise; also return segment energies."""
    n_total = int(round(clip_seconds * sr))
    span = sum(s.total_s for s in segments) + sum(gaps)
    onset = rng.uniform(0.02, max(0.02, clip_seconds - span - 0.02))
    # Background: white noise with a random spectral tilt (from white to roughly pink), low level.
    spec = np.fft.rfft(rng.standard_normal(n_total))
    freqs = np.fft.rfftfreq(n_total, 1.0 / sr)
    spec /= np.maximum(freqs, 50.0) ** rng.uniform(0.0, 0.5)
    bg = np.fft.irfft(spec, n_total)
    audio = bg / (bg.std() + 1e-9) * rng.uniform(0.003, 0.012)

    energies = []
    pos = int(onset * sr)
    for i, seg in enumerate(segments):
        amp = rng.uniform(0.10, 0.16) if seg.loudness == "quiet" else rng.uniform(0.50, 0.70)
        unit_n = max(16, int(seg.unit_s * sr))
        for _ in range(seg.count):
            wave = _SYNTHS[seg.label](rng, unit_n, sr, seg)
            wave = wave / (np.abs(wave).max() + 1e-9) * amp
            end = min(n_total, pos + unit_n)
            audio[pos:end] += wave[: end - pos]
            pos += unit_n + int(seg.gap_s * sr)
        pos -= int(seg.gap_s * sr)
        if i < len(gaps):
            pos += int(gaps[i] * sr)
        energies.append(amp**2 * seg.count * seg.unit_s)
    return np.clip(audio, -1.0, 1.0).astype(np.float32), energies


# --------------------------------------------------------------------------------------------------
# Captions
# --------------------------------------------------------------------------------------------------


def _choice(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _segment_phrase(rng: np.random.Generator, seg: _Segment) -> str:
    singular, plural = _NOUNS[seg.label][int(rng.integers(len(_NOUNS[seg.label])))]
    noun = singular if seg.count == 1 else plural
    if seg.label == "chirp":
        noun = f"{_choice(rng, _DIR_WORDS[seg.direction])} {noun}"
    cnt = _choice(rng, _COUNT_WORDS[seg.count])
    pitch = _choice(rng, _PITCH_WORDS[seg.pitch])
    loud = _choice(rng, _LOUD_WORDS[seg.loudness])
    dur = _choice(rng, _DUR_WORDS[seg.duration])
    be = "is" if seg.count == 1 else "are"
    template = int(rng.integers(4))
    if template == 0:
        phrase = f"{cnt} {loud} {dur} {pitch} {noun}"
    elif template == 1:
        phrase = f"{cnt} {dur}, {loud} {pitch} {noun}"
    elif template == 2:
        phrase = f"{cnt} {pitch} {noun} that {be} {dur} and {loud}"
    else:
        phrase = f"{cnt} {loud}, {pitch} and {dur} {noun}"
    if phrase.startswith("a ") and phrase[2] in "aeiou":
        phrase = "an " + phrase[2:]
    return phrase


def _caption(rng: np.random.Generator, segments: list[_Segment]) -> str:
    phrases = {f"s{i + 1}": _segment_phrase(rng, s) for i, s in enumerate(segments)}
    frame = _choice(rng, _FRAMES[len(segments)])
    text = frame.format(
        **phrases,
        is1="is" if segments[0].count == 1 else "are",
        follows2="follows" if len(segments) > 1 and segments[1].count == 1 else "follow",
    )
    text = text[0].upper() + text[1:]
    return text + "." if rng.random() < 0.5 else text


def _captions(rng: np.random.Generator, segments: list[_Segment]) -> list[str]:
    wanted = int(rng.integers(2, 6))
    captions: list[str] = []
    for _ in range(50):
        cap = _caption(rng, segments)
        # Paraphrases must differ in words, not only in the final full stop.
        if cap.rstrip(".") not in {c.rstrip(".") for c in captions}:
            captions.append(cap)
        if len(captions) == wanted:
            break
    return captions


# --------------------------------------------------------------------------------------------------
# Corpus
# --------------------------------------------------------------------------------------------------


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


def _read_info(root: Path) -> dict | None:
    try:
        return json.loads((root / INFO_FILE).read_text())
    except (OSError, ValueError):
        return None


def is_complete_corpus(root: str | os.PathLike, **params) -> bool:
    """True if ``root`` holds a finished corpus; with ``params``, also built with exactly those."""
    info = _read_info(Path(root))
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
    language: str, seed: int, index: int, segments: list[_Segment], wanted: int
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
    segments, gaps = _sample_segments(rng, clip_seconds)
    audio, energies = _render_clip(rng, segments, gaps, sr, clip_seconds)
    captions = _captions(rng, segments)
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


def main(argv: list[str] | None = None) -> None:
    """``python -m modeling_supclap.data.demo_corpus ROOT``: build the corpus and print its size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root")
    # The names of train_supclap.py's flags (--demo_num_clips there); hyphenated spellings still work.
    parser.add_argument("--num_clips", "--num-clips", type=int, default=2400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sampling_rate", "--sampling-rate", type=int, default=16000)
    parser.add_argument("--clip_seconds", "--clip-seconds", type=float, default=2.0)
    parser.add_argument("--languages", nargs="+", default=None, help=f"of {', '.join(DEMO_LANGUAGES)}")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    root = build_demo_corpus(
        args.root, args.num_clips, args.seed, args.sampling_rate, args.clip_seconds, args.languages
    )
    info = _read_info(root)
    print(f"{root}: {info['splits']} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
