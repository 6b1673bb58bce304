"""Where a batch is made: items (decoded clips or raw rows) to the keyword arguments of the model's forward.

One caption per clip (``captions.choose_caption``), tokenised; log-mel features by ``features.py``'s
batched path; every random choice seeded by the batch's dataset indices and epoch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
from transformers import ProcessorMixin

from .audio import decode_audio
from .captions import choose_caption, parse_caption_cell, parse_language_weights
from .features import audio_model_inputs, finish_on_device

__all__ = ["SupClapCollator"]


def _item_captions(item: dict[str, Any], where: str) -> tuple[list[str], list[str] | None]:
    """An item's captions and their languages (None: not known). Raw rows may hold a caption, a list, or
    ``{language: caption}`` mappings, as ``load_records`` reads them."""
    for key in ("captions", "caption", "text"):
        if key in item and item[key] is not None:
            value = item[key]
            if isinstance(value, Mapping) or (
                isinstance(value, (list, tuple)) and any(isinstance(v, Mapping) for v in value)
            ):
                pairs, _ = parse_caption_cell(value, key, where, from_text_file=False)
                return [text for _, text in pairs], [lang for lang, _ in pairs]
            captions = [value] if isinstance(value, str) else list(value)
            languages = item.get("languages")
            if languages is not None and len(languages) == len(captions):
                kept = [(c, lang) for c, lang in zip(captions, languages) if isinstance(c, str) and c.strip()]
                if kept:
                    return [c for c, _ in kept], [lang for _, lang in kept]
            captions = [c for c in captions if isinstance(c, str) and c.strip()]
            if captions:
                return captions, None
            raise ValueError(f"{where}: no non-empty caption in '{key}'")
    raise ValueError(f"{where}: item has no 'captions' (keys: {sorted(item)})")


class SupClapCollator:
    """Turn a list of items into the keyword arguments of a SupCLAP model's ``forward``.

    Returns ``{"input_ids", "attention_mask", <the audio tower's inputs>, "return_loss"}``: CLAP's
    ``input_features`` and ``is_longer``, or a dual encoder's ``input_values``/``input_features`` and
    ``audio_attention_mask`` (``features.audio_model_inputs``); no ``labels`` (the Trainer would treat them
    as targets). ``None`` items (bad samples skipped by
    :class:`AudioTextDataset`) are dropped.

    Items are either :class:`AudioTextDataset` items (decoded ``audio`` array at the processor's rate)
    or raw dataset rows, e.g. from ``datasets`` with ``Audio(decode=False)`` and the Trainer's
    ``remove_unused_columns=False``: ``audio`` is then a path, file bytes or a ``{"path", "bytes"}`` /
    ``{"array", "sampling_rate"}`` dict, decoded here; captions come from ``captions`` (str or list),
    ``caption`` or ``text``.

    One caption per clip: the first, or (``caption_choice="random"``) one drawn with a torch Generator:
    with captions in several languages, first a language among the clip's (``language_weights``:
    ``{language: weight}``, 1 for languages not listed, 0 never draws one), then one of its captions.
    The generator, and the numpy seed of the feature extractor's random crop of long audio, derive from
    ``(seed, epoch, dataset indices of the batch)``: the same batch gives the same tensors whatever the
    number of DataLoader workers, and different epochs/batches draw different captions. Items without
    an ``index`` fall back to a per-collator call counter (reproducible for the same call order in one
    process). The global numpy random state is restored after each call.

    ``log_mel_on_device``: where CLAP's exact fast path applies, the batch carries the cropped waveforms
    instead of ``input_features`` (DataLoader workers then only decode, resample and crop) and
    :meth:`on_device` computes the log-mel once the batch is on the model's device; the crops, and on the
    CPU the features, are the same either way.
    """

    def __init__(
        self,
        processor: ProcessorMixin,
        max_text_length: int = 64,
        caption_choice: Literal["random", "first"] = "random",
        seed: int = 0,
        return_loss: bool = True,
        language_weights: Mapping[str, float] | Sequence[str] | None = None,
        log_mel_on_device: bool = False,
    ) -> None:
        if caption_choice not in ("random", "first"):
            raise ValueError(f"caption_choice must be 'random' or 'first', got {caption_choice!r}")
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.feature_extractor = processor.feature_extractor
        self.sampling_rate = int(self.feature_extractor.sampling_rate)
        self.max_text_length = int(max_text_length)
        self.caption_choice = caption_choice
        self.seed = int(seed)
        self.return_loss = bool(return_loss)
        self.language_weights = parse_language_weights(language_weights)
        self.log_mel_on_device = bool(log_mel_on_device)
        self.epoch = 0
        self._calls = 0

    def set_epoch(self, epoch: int) -> None:
        """Epoch used for items that do not carry one (raw rows)."""
        self.epoch = int(epoch)

    def on_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        """The batch, on the model's device, made into the model's inputs: the log-mel of waveforms left
        for the device (``log_mel_on_device``); any other batch as it is."""
        return finish_on_device(self.processor, batch)

    def _batch_seed(self, items: list[dict[str, Any]]) -> int:
        epochs = [it["epoch"] for it in items if it.get("epoch") is not None]
        epoch = int(max(epochs)) if epochs else self.epoch
        if all(it.get("index") is not None for it in items):
            material = [self.seed, epoch, *(int(it["index"]) for it in items)]
        else:
            material = [self.seed, epoch, 1 << 40, self._calls]
        self._calls += 1
        return int(np.random.SeedSequence(material).generate_state(1, dtype=np.uint32)[0])

    def __call__(self, items: Sequence[dict[str, Any] | None]) -> dict[str, Any]:
        items = [it for it in items if it is not None]
        if not items:
            raise ValueError(
                "every sample of this batch was bad (None); run scan_records() to drop bad samples first"
            )
        seed = self._batch_seed(items)
        generator = torch.Generator().manual_seed(seed)

        audios: list[np.ndarray] = []
        texts: list[str] = []
        for k, item in enumerate(items):
            where = str(item.get("source") or f"batch item {k} (index {item.get('index')})")
            captions, languages = _item_captions(item, where)
            if self.caption_choice == "first" or len(captions) == 1:
                texts.append(captions[0])
            else:
                texts.append(choose_caption(captions, languages, generator, self.language_weights))
            audio = item.get("audio")
            if isinstance(audio, torch.Tensor):
                audio = audio.numpy()
            if isinstance(audio, np.ndarray):
                # Dataset items are already decoded at the processor's rate.
                audio = audio.astype(np.float32, copy=False)
                if audio.ndim != 1:
                    raise ValueError(f"{where}: audio array must be mono 1-D, got shape {audio.shape}")
            else:
                audio = decode_audio(audio, self.sampling_rate, where)
            audios.append(audio)

        text_inputs = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_text_length, return_tensors="pt"
        )
        # ClapFeatureExtractor crops long audio with the global np.random: seed it, then restore it.
        state = np.random.get_state()
        np.random.seed(seed)
        try:
            audio_inputs = audio_model_inputs(self.processor, audios, self.log_mel_on_device)
        finally:
            np.random.set_state(state)

        return {
            "input_ids": text_inputs["input_ids"],
            "attention_mask": text_inputs["attention_mask"],
            **audio_inputs,
            "return_loss": self.return_loss,
        }
