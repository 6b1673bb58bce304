"""What the demo app does, without the page: a loaded model and index answering people's questions.

The page (``ui.py``) and its API endpoints call these methods; each raises :class:`~.inputs.UserFacingError`
with a message for people where the question cannot be answered as asked.

- Zero-shot goes through ``pipeline("zero-shot-audio-classification")`` itself (built on the loaded model,
  tokenizer and feature extractor), so the page shows the pipeline's numbers for the clip it was given. A
  clip longer than the feature extractor's window is cropped by the extractor as the pipeline does, from a
  fixed seed, so the same upload always gets the same answer.
- Search and similar sounds are the public search API's (``inference.EmbeddingIndex.search_text`` and
  ``search_audio``: a query clip is embedded as the index embedded its clips). An index made by another
  model is refused once, when the app starts; the tabs that need it then show why.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import pipeline

from ..inference import EmbeddingIndex, SearchHit, load_model_and_processor
from .inputs import Upload, UserFacingError, parse_labels, parse_query, read_upload

__all__ = ["DEFAULT_LABELS", "MAX_TOP_K", "DemoService", "SearchAnswer", "ZeroShotAnswer", "resolve_device"]

# Labels offered when the index has none: everyday sounds (an index with labels, such as the demo corpus's,
# offers its own most common ones instead).
DEFAULT_LABELS = ("dog barking", "rain", "speech", "music", "car horn", "siren", "birds singing")
MAX_DEFAULT_LABELS = 10
# The seed of the feature extractor's crop of clips longer than its window (as evaluation seeds its crops).
CROP_SEED = 0
PROMPT_TEMPLATE = "This is a sound of {}."  # the pipeline's own default
MAX_TOP_K = 20  # results per search (each gets a player in the page)


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


@dataclass(frozen=True)
class SearchAnswer:
    """The clips found, best first, and a note for the page."""

    hits: list[SearchHit]
    note: str


def _index_labels(index: EmbeddingIndex) -> list[str]:
    """The index's most common clip labels (none when its clips have none)."""
    counts = Counter(label for position in range(len(index)) if (label := index.row(position)["label"]))
    return [label for label, _ in counts.most_common(MAX_DEFAULT_LABELS)]


class DemoService:
    """A model and its processor on ``device``, and optionally an index to search, ready to answer."""

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
        self.classifier = pipeline(
            "zero-shot-audio-classification",
            model=self.model,
            tokenizer=processor.tokenizer,
            feature_extractor=processor.feature_extractor,
            device=device,
        )
        self._numpy_random = threading.Lock()  # the extractor's crops draw from numpy's global generator
        self.index: EmbeddingIndex | None = None
        self.index_problem: str | None = None  # why the index cannot be searched with this model
        self.default_labels = list(DEFAULT_LABELS)

    def use_index(self, folder: str | Path) -> None:
        """Search the index ``supclap-embed`` wrote in ``folder`` (loaded on the model's device). One made by
        another model is kept, with the reason it cannot be searched in ``index_problem`` (the page says it);
        its labels, if its clips have some, become the default labels."""
        self.index = EmbeddingIndex.load(folder, device=self.device)
        try:
            self.index.check_model(self.model)
            self.index_problem = None
        except ValueError as error:
            self.index_problem = str(error)
        self.default_labels = _index_labels(self.index) or list(DEFAULT_LABELS)

    @classmethod
    def load(
        cls,
        model_name_or_path: str,
        device: str = "auto",
        max_audio_seconds: float = 30.0,
        index: str | Path | None = None,
    ) -> DemoService:
        """Load a model folder or Hub id with its processor, and the index folder ``supclap-embed`` wrote
        (if any), on ``device``."""
        resolved = resolve_device(device)
        model, processor = load_model_and_processor(model_name_or_path, resolved)
        service = cls(model, processor, model_name_or_path, resolved, max_audio_seconds)
        if index is not None:
            service.use_index(index)
        return service

    @property
    def window_seconds(self) -> float | None:
        """The longest clip the feature extractor takes whole (None where it does not say)."""
        samples = getattr(self.processor.feature_extractor, "nb_max_samples", None)
        return samples / self.sampling_rate if samples else None

    def audio_folders(self) -> list[Path]:
        """The folders the index's clips are in (the page's players may stream from these, nothing else)."""
        if self.index is None:
            return []
        paths = (self.index.row(position)["path"] for position in range(len(self.index)))
        return sorted({Path(path).parent for path in paths if path})

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

    def search(self, query: str | None, top_k: float | None = 5) -> SearchAnswer:
        """The ``top_k`` clips of the index that best match the text ``query``."""
        text = parse_query(query)
        index, count = self._searchable_index(), self._top_k(top_k)
        hits = index.search_text(self.model, self.processor, text, count)
        return SearchAnswer(hits, f"The {len(hits)} clips of {len(index)} that best match “{text}”.")

    def similar(self, audio_path: str | None, top_k: float | None = 5) -> SearchAnswer:
        """The ``top_k`` clips of the index that sound most like the uploaded clip."""
        index, count = self._searchable_index(), self._top_k(top_k)
        upload = self.read(audio_path)
        hits = index.search_audio(
            self.model, self.processor, upload.waveform, count, sampling_rate=upload.sampling_rate
        )
        found = f"The {len(hits)} clips of {len(index)} that sound most like `{upload.name}`."
        return SearchAnswer(hits, " ".join(note for note in (found, upload.note()) if note))

    def _searchable_index(self) -> EmbeddingIndex:
        if self.index is None:
            raise UserFacingError(
                "This app serves no index to search: start it with --index FOLDER (an index supclap-embed "
                "made with this model), or without --model_name_or_path for the demo's."
            )
        if self.index_problem is not None:
            raise UserFacingError(f"The index cannot be searched with this app's model. {self.index_problem}")
        return self.index

    def _top_k(self, top_k: float | None) -> int:
        if top_k is None or not 1 <= top_k <= MAX_TOP_K or int(top_k) != top_k:
            raise UserFacingError(f"Ask for 1 to {MAX_TOP_K} results (got {top_k}).")
        return min(int(top_k), len(self.index))
