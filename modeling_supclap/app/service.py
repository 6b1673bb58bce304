"""What the demo app does, without the page: a loaded model (and index) answering zero-shot questions.

The page (``ui.py``) and its API endpoints call these methods; each raises :class:`~.inputs.UserFacingError`
with a message for people where the input cannot be used.

Zero-shot goes through ``pipeline("zero-shot-audio-classification")`` itself (built on the loaded model,
tokenizer and feature extractor), so the page shows the pipeline's numbers for the clip it was given. A clip
longer than the feature extractor's window is cropped by the extractor as the pipeline does, from a fixed
seed, so the same upload always gets the same answer.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import AutoModel, AutoProcessor, pipeline

from .inputs import Upload, parse_labels, read_upload

__all__ = ["DEFAULT_LABELS", "DemoService", "ZeroShotAnswer", "resolve_device"]

# Labels offered when the index has none: everyday sounds (a model trained on the demo corpus is offered
# the demo's own classes instead, from its index).
DEFAULT_LABELS = ("dog barking", "rain", "speech", "music", "car horn", "siren", "birds singing")
# The seed of the feature extractor's crop of clips longer than its window (as evaluation seeds its crops).
CROP_SEED = 0
PROMPT_TEMPLATE = "This is a sound of {}."  # the pipeline's own default


def resolve_device(device: str) -> torch.device:
    """``"auto"``: the first GPU if there is one, else the CPU; otherwise the device named."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: no CUDA GPU is visible on this machine (use cpu or auto)")
    return resolved


@dataclass(frozen=True)
class ZeroShotAnswer:
    """Probabilities by label (in the order given) and a note for the page (empty when none)."""

    probabilities: dict[str, float]
    note: str


class DemoService:
    """A model and its processor, ready to answer the app's questions on ``device``."""

    def __init__(
        self,
        model: torch.nn.Module,
        processor: Any,
        model_name: str,
        device: torch.device,
        max_audio_seconds: float = 30.0,
    ) -> None:
        if max_audio_seconds <= 0:
            raise ValueError(f"max_audio_seconds must be > 0, got {max_audio_seconds}")
        self.model = model.eval().to(device)
        self.processor = processor
        self.model_name = model_name
        self.device = device
        self.max_audio_seconds = float(max_audio_seconds)
        self.sampling_rate = int(processor.feature_extractor.sampling_rate)
        self.default_labels = list(DEFAULT_LABELS)
        self.classifier = pipeline(
            "zero-shot-audio-classification",
            model=self.model,
            tokenizer=processor.tokenizer,
            feature_extractor=processor.feature_extractor,
            device=device,
        )
        self._numpy_random = threading.Lock()  # the extractor's crops draw from numpy's global generator

    @classmethod
    def load(
        cls, model_name_or_path: str, device: str = "auto", max_audio_seconds: float = 30.0
    ) -> DemoService:
        """Load a model folder or Hub id with its processor (the package, imported to get here, registered
        both model families with the Auto classes)."""
        resolved = resolve_device(device)
        model = AutoModel.from_pretrained(model_name_or_path)
        processor = AutoProcessor.from_pretrained(model_name_or_path)
        return cls(model, processor, model_name_or_path, resolved, max_audio_seconds)

    @property
    def window_seconds(self) -> float | None:
        """The longest clip the feature extractor takes whole (None where it does not say)."""
        samples = getattr(self.processor.feature_extractor, "nb_max_samples", None)
        return samples / self.sampling_rate if samples else None

    def read(self, audio_path: str | None) -> Upload:
        """An upload decoded at the model's rate, at most ``max_audio_seconds`` of it."""
        return read_upload(audio_path, self.sampling_rate, self.max_audio_seconds)

    @torch.no_grad()
    def zero_shot(self, audio_path: str | None, labels: str | None) -> ZeroShotAnswer:
        """The pipeline's probability of each comma-separated label for the uploaded clip."""
        candidates = parse_labels(labels)
        upload = self.read(audio_path)
        with self._numpy_random:
            saved = np.random.get_state()
            np.random.seed(CROP_SEED)
            try:
                scores = self.classifier(
                    upload.waveform, candidate_labels=candidates, hypothesis_template=PROMPT_TEMPLATE
                )
            finally:
                np.random.set_state(saved)
        by_label = {entry["label"]: float(entry["score"]) for entry in scores}
        notes = [upload.note()]
        window = self.window_seconds
        if window is not None and upload.used_seconds > window + 1e-6:
            notes.append(
                f"The model hears a {window:g} s window of it (its input length), cropped at a fixed seed."
            )
        if len(candidates) == 1:
            notes.append("With one label its probability is always 1: give two or more to compare.")
        return ZeroShotAnswer(
            {label: by_label[label] for label in candidates}, " ".join(n for n in notes if n)
        )
