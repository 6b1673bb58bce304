"""The demo corpus's sounds: 1-3 segments per clip, each an event type (beep, hum, chirp, ...) repeated
one to three times with a pitch, a loudness and a duration, synthesised with numpy.

:func:`sample_segments` draws what a clip contains, :func:`render_clip` renders it; both draw from the
clip's own generator, so a clip depends only on ``(seed, index)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["EVENT_TYPES", "Segment", "render_clip", "sample_segments"]


@dataclass(frozen=True)
class Segment:
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


def sample_segments(rng: np.random.Generator, clip_seconds: float) -> tuple[list[Segment], list[float]]:
    """Draw 1-3 segments (distinct event types) plus the gaps between them, fitting in the clip."""
    # Durations are absolute (so "short" means the same thing in every clip) but shrink for clips
    # shorter than 2 s so that three segments of three long repetitions can still fit.
    scale = min(1.0, clip_seconds / 2.0)
    budget = clip_seconds - 0.1 * scale  # keep a little room for the random onset
    for _ in range(100):
        n = int(rng.choice([1, 2, 3], p=[0.3, 0.4, 0.3]))
        labels = rng.choice(len(EVENT_TYPES), size=n, replace=False)
        segments = []
        for li in labels:
            duration = "short" if rng.random() < 0.5 else "long"
            lo, hi = (0.07, 0.10) if duration == "short" else (0.20, 0.28)
            segments.append(
                Segment(
                    label=EVENT_TYPES[int(li)],
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
    seg = Segment(EVENT_TYPES[0], 1, "high", "loud", "short", "up", 0.07 * scale, 0.05 * scale)
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


def render_clip(
    rng: np.random.Generator, segments: list[Segment], gaps: list[float], sr: int, clip_seconds: float
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


# The event types, in the order every draw indexes them (changing it changes every corpus).
EVENT_TYPES = list(_SYNTHS)
