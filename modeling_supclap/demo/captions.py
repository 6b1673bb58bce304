"""The demo corpus's English captions: several paraphrases per clip that say what happens, in order.

Synonyms, adjective orders and sentence frames ("X then Y", "Y follows X") vary, so matching audio to text
needs the text tower to understand counts, order and attributes. Other languages: ``languages.py``.
"""

from __future__ import annotations

import numpy as np

from .sounds import EVENT_TYPES, Segment

__all__ = ["english_captions"]


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


# --------------------------------------------------------------------------------------------------
# Captions
# --------------------------------------------------------------------------------------------------


def _choice(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _segment_phrase(rng: np.random.Generator, seg: Segment) -> str:
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


def _caption(rng: np.random.Generator, segments: list[Segment]) -> str:
    phrases = {f"s{i + 1}": _segment_phrase(rng, s) for i, s in enumerate(segments)}
    frame = _choice(rng, _FRAMES[len(segments)])
    text = frame.format(
        **phrases,
        is1="is" if segments[0].count == 1 else "are",
        follows2="follows" if len(segments) > 1 and segments[1].count == 1 else "follow",
    )
    text = text[0].upper() + text[1:]
    return text + "." if rng.random() < 0.5 else text


def english_captions(rng: np.random.Generator, segments: list[Segment]) -> list[str]:
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


assert list(_NOUNS) == EVENT_TYPES  # every event type has nouns, in the draw order
