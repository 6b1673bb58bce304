"""SupClapDualEncoderProcessor: the audio tower's feature extractor and the text tower's tokenizer, as one.

``processor(text=..., audio=..., sampling_rate=...)`` gives the text tower's ``input_ids`` and
``attention_mask`` and the audio tower's ``input_values`` or ``input_features`` with ``audio_attention_mask``,
the extractor's padding mask under another name: the zero-shot pipeline calls the bare extractor and
the tokenizer and then ``model(**text_inputs, **audio_inputs)``, where two ``attention_mask`` would
collide. So the extractor is saved asking for no mask, and this processor asks for it itself.
transformers derives the processor's parts from ``__init__``'s parameter names and loads them with
``AutoFeatureExtractor`` and ``AutoTokenizer``.

Part of the model's load-time import closure (numpy, torch and transformers only).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from transformers import BatchFeature
from transformers.processing_utils import ProcessorMixin


def fbank_frames(num_samples: int, sampling_rate: int) -> int:
    """Kaldi fbank frames of ``num_samples`` (25 ms window, 10 ms shift, no padding), as AST's extractor."""
    window, hop = int(0.025 * sampling_rate), int(0.010 * sampling_rate)
    return max(0, (num_samples - window) // hop + 1)


class SupClapDualEncoderProcessor(ProcessorMixin):
    """Feature extractor + tokenizer of a [`SupClapDualEncoderModel`] (see the module docstring).

    Example::

        >>> processor = SupClapDualEncoderProcessor(feature_extractor, tokenizer)  # doctest: +SKIP
        >>> inputs = processor(text=["a dog barks"], audio=[clip], sampling_rate=16000)  # doctest: +SKIP
        >>> model(**inputs, return_loss=False).logits_per_audio  # doctest: +SKIP
    """

    def __init__(self, feature_extractor: Any, tokenizer: Any) -> None:
        super().__init__(feature_extractor, tokenizer)

    def _mask_arguments(self) -> dict[str, Any]:
        """What makes the extractor return its padding mask (each family asks differently)."""
        name = type(self.feature_extractor).__name__
        if name == "WhisperFeatureExtractor":  # at call time: the mel-frame mask (the constructor's: samples)
            return {"return_attention_mask": True}
        if name in ("Wav2Vec2FeatureExtractor", "SeamlessM4TFeatureExtractor"):
            return {"padding": True, "return_attention_mask": True}
        return {}

    def audio_inputs(
        self,
        audio: np.ndarray | list[np.ndarray],
        sampling_rate: int | None = None,
        return_tensors: str = "pt",
    ) -> dict[str, Any]:
        """The audio tower's inputs of mono clips at the extractor's rate (the mask: audio_attention_mask)."""
        extractor = self.feature_extractor
        rate = sampling_rate or extractor.sampling_rate
        clips = [audio] if isinstance(audio, np.ndarray) and audio.ndim == 1 else list(audio)
        features = dict(
            extractor(clips, sampling_rate=rate, return_tensors=return_tensors, **self._mask_arguments())
        )
        mask = features.pop("attention_mask", None)
        if mask is None and type(extractor).__name__ == "ASTFeatureExtractor":  # it never returns one
            lengths = torch.tensor(
                [min(fbank_frames(len(clip), rate), extractor.max_length) for clip in clips]
            )
            mask = (torch.arange(extractor.max_length)[None, :] < lengths[:, None]).long()
        if mask is not None:
            features["audio_attention_mask"] = mask
        return features

    def __call__(
        self,
        text: str | list[str] | None = None,
        audio: np.ndarray | list[np.ndarray] | None = None,
        sampling_rate: int | None = None,
        return_tensors: str = "pt",
        padding: bool | str = True,
        truncation: bool = True,
        max_length: int | None = None,
        **kwargs: Any,
    ) -> BatchFeature:
        if text is None and audio is None:
            raise ValueError("SupClapDualEncoderProcessor needs text, audio or both")
        data: dict[str, Any] = {}
        if text is not None:
            tokens = self.tokenizer(
                text,
                padding=padding,
                truncation=truncation,
                max_length=max_length,
                return_tensors=return_tensors,
            )
            data.update(tokens)
        if audio is not None:
            data.update(self.audio_inputs(audio, sampling_rate, return_tensors))
        return BatchFeature(data, tensor_type=return_tensors)

    def save_pretrained(self, save_directory: Any, **kwargs: Any) -> Any:
        """Saves the extractor asking for no mask (module docstring); this processor asks at call time."""
        extractor = self.feature_extractor
        asked = getattr(extractor, "return_attention_mask", None)
        if asked:
            extractor.return_attention_mask = False
        try:
            return super().save_pretrained(save_directory, **kwargs)
        finally:
            if asked:
                extractor.return_attention_mask = asked

    @property
    def model_input_names(self) -> list[str]:
        audio = [
            "audio_attention_mask" if n == "attention_mask" else n
            for n in self.feature_extractor.model_input_names
        ]
        return list(dict.fromkeys([*self.tokenizer.model_input_names, *audio, "audio_attention_mask"]))


__all__ = ["SupClapDualEncoderProcessor", "fbank_frames"]
