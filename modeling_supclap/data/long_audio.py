"""What a model sees of a clip longer than its feature extractor's window: the long-audio policy.

A CLAP feature extractor takes a fixed window (``nb_max_samples``: 10 s for LAION's checkpoints) and crops
anything longer at a random offset, so the same 60 s file gives a different embedding on every call and is
mostly judged on audio that may not hold the event. Three policies (``--long_audio``):

* ``windows`` (evaluation's and embedding's default): cover the whole clip with windows of the model's
  length every ``window_hop_seconds`` (default: one window, so windows do not overlap), the last one ending
  at the clip's end; the clip's embedding is the renormalised mean of its windows' normalised embeddings
  (``evaluation/encode.py``). Deterministic: nothing is drawn.
* ``first``: the first window only.
* ``random``: the whole clip handed to the feature extractor, which crops it at a seeded random offset
  (training's crops, and evaluation's before this policy existed; kept for comparison).

A clip no longer than the window is one window under every policy, padded as the extractor pads it.
Extractors that take any length (wav2vec2's family) have no window: each clip is one window, whole.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["LONG_AUDIO_POLICIES", "LongAudioPolicy", "audio_window_samples", "window_starts"]

LONG_AUDIO_POLICIES = ("windows", "first", "random")


def audio_window_samples(feature_extractor: Any) -> int | None:
    """Samples of one window of ``feature_extractor`` (what it keeps of a longer clip); ``None`` if it takes
    clips of any length.

    CLAP's extractors (transformers' and LAION's) keep ``nb_max_samples``, Whisper's ``n_samples``, AST's
    ``max_length`` Kaldi fbank frames (25 ms windows every 10 ms).
    """
    for name in ("nb_max_samples", "n_samples"):
        value = getattr(feature_extractor, name, None)
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0:
            return int(value)
    if type(feature_extractor).__name__ == "ASTFeatureExtractor":
        rate = int(feature_extractor.sampling_rate)
        window, hop = int(0.025 * rate), int(0.010 * rate)
        # The shortest clip with max_length frames (processing_supclap_dual_encoder.fbank_frames).
        return window + (int(feature_extractor.max_length) - 1) * hop
    return None


def window_starts(num_samples: int, window: int, hop: int) -> list[int]:
    """Start samples of windows of ``window`` samples every ``hop`` that cover ``num_samples`` samples: ``0,
    hop, 2 hop, ...`` while a window ends before the clip does, then one ending exactly at its end."""
    if window <= 0 or hop <= 0:
        raise ValueError(f"window ({window}) and hop ({hop}) must be positive sample counts")
    if num_samples <= window:
        return [0]
    starts = list(range(0, num_samples - window, hop))
    return [*starts, num_samples - window]


@dataclass(frozen=True)
class LongAudioPolicy:
    """How a clip longer than the model's window is embedded (see the module docstring).

    ``window_hop_seconds``: the step between windows of ``windows`` (``None``: the window's length);
    shorter steps overlap the windows, and must not be shorter than 1 % of a window (a step of one sample
    would embed a 60 s clip as half a million windows).
    """

    policy: str = "windows"
    window_hop_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.policy not in LONG_AUDIO_POLICIES:
            raise ValueError(
                f"long_audio must be one of {', '.join(LONG_AUDIO_POLICIES)}, got {self.policy!r}"
            )
        hop = self.window_hop_seconds
        if hop is not None and not (isinstance(hop, (int, float)) and math.isfinite(hop) and hop > 0):
            raise ValueError(f"window_hop_seconds must be a positive number of seconds, got {hop!r}")

    def hop_samples(self, window: int, sampling_rate: int) -> int:
        """The hop in samples for windows of ``window`` samples at ``sampling_rate``."""
        if self.window_hop_seconds is None:
            return window
        hop = int(round(self.window_hop_seconds * sampling_rate))
        if hop * 100 < window:
            raise ValueError(
                f"window_hop_seconds={self.window_hop_seconds} is under 1 % of the model's "
                f"{window / sampling_rate:g} s window: use a hop of at least "
                f"{window / sampling_rate / 100:g} s"
            )
        return hop

    def windows(self, audio: np.ndarray, feature_extractor: Any) -> list[np.ndarray]:
        """What the feature extractor gets of ``audio`` (mono, at its rate): one or more clips, in order.

        ``random`` returns the whole clip (the extractor crops it); ``first`` its first window; ``windows``
        the windows of :func:`window_starts`. Views of ``audio``, no copy.
        """
        window = audio_window_samples(feature_extractor)
        if self.policy == "random" or window is None or audio.shape[0] <= window:
            return [audio]
        if self.policy == "first":
            return [audio[:window]]
        hop = self.hop_samples(window, int(feature_extractor.sampling_rate))
        return [audio[start : start + window] for start in window_starts(audio.shape[0], window, hop)]

    def describe(self) -> dict[str, Any]:
        """The policy as the index manifest and reports record it."""
        return {"long_audio": self.policy, "window_hop_seconds": self.window_hop_seconds}
