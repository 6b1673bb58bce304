"""Torch dataset over :class:`AudioTextRecord` lists and the batch collator feeding ``ClapModel.forward``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
from transformers import ClapProcessor

from .features import clap_features
from .loading import (
    AudioTextRecord,
    BadSampleError,
    check_on_bad_sample,
    decode_audio,
    normalize_language,
    parse_caption_cell,
)

__all__ = ["AudioTextDataset", "SupClapCollator", "choose_caption", "parse_language_weights", "scan_records"]


class AudioTextDataset(torch.utils.data.Dataset):
    """Map-style dataset that decodes audio in ``__getitem__`` (so in DataLoader worker processes).

    Items are ``{"audio": float32 mono np.ndarray at target_sr, "captions": list[str], "languages":
    list[str] | None (the language of each caption), "label": str | None, "index": i, "epoch": e}``.
    With ``on_bad_sample="skip"`` an undecodable sample yields ``None`` (which :class:`SupClapCollator`
    drops) and is counted in ``num_bad`` / ``bad_sources``; with ``"error"`` it raises
    :class:`BadSampleError`.

    Note: with ``num_workers > 0`` each worker process works on its own copy of the dataset, so the
    counts seen in the main process stay at 0. Run :func:`scan_records` before training to find (and
    drop) bad samples up front.
    """

    def __init__(
        self,
        records: Sequence[AudioTextRecord],
        target_sr: int,
        on_bad_sample: Literal["error", "skip"] = "error",
    ) -> None:
        self.records = list(records)
        self.target_sr = int(target_sr)
        self.on_bad_sample = check_on_bad_sample(on_bad_sample)
        self.num_bad = 0
        self.bad_sources: list[str] = []
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        """Record the epoch; items carry it so the collator's caption choice changes per epoch."""
        self.epoch = int(epoch)

    def __getitem__(self, i: int) -> dict[str, Any] | None:
        record = self.records[i]
        try:
            audio = decode_audio(record.audio, self.target_sr, record.source)
        except BadSampleError:
            if self.on_bad_sample == "error":
                raise
            self.num_bad += 1
            self.bad_sources.append(record.source)
            return None
        return {
            "audio": audio,
            "captions": list(record.captions),
            "languages": None if record.languages is None else list(record.languages),
            "label": record.label,
            "index": int(i),
            "epoch": self.epoch,
        }


def scan_records(
    records: Sequence[AudioTextRecord], target_sr: int
) -> tuple[list[AudioTextRecord], list[tuple[AudioTextRecord, str]]]:
    """Decode every record once; return ``(good_records, [(bad_record, error message), ...])``.

    Use it before training (in the main process) to report and drop bad samples deterministically,
    instead of relying on ``on_bad_sample="skip"`` counts, which worker processes do not send back.
    """
    good: list[AudioTextRecord] = []
    bad: list[tuple[AudioTextRecord, str]] = []
    for record in records:
        try:
            if not record.captions or any(not isinstance(c, str) or not c.strip() for c in record.captions):
                raise BadSampleError(record.source, "empty caption")
            decode_audio(record.audio, target_sr, record.source)
        except BadSampleError as err:
            bad.append((record, str(err)))
        else:
            good.append(record)
    return good, bad


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


def _weight_entry(entry: str) -> tuple[str, str]:
    language, sep, weight = str(entry).partition("=")
    if not sep:
        raise ValueError(f"--caption_language_weights: {entry!r} is not LANGUAGE=WEIGHT (e.g. fr=0.5)")
    return language, weight


def parse_language_weights(spec: Sequence[str] | Mapping[str, float] | None) -> dict[str, float] | None:
    """``["en=2", "fr=1"]`` (``--caption_language_weights``) as ``{"en": 2.0, "fr": 1.0}``."""
    if spec is None:
        return None
    items = spec.items() if isinstance(spec, Mapping) else [_weight_entry(entry) for entry in spec]
    weights: dict[str, float] = {}
    for language, weight in items:
        try:
            value = float(weight)
        except ValueError as err:
            raise ValueError(
                f"--caption_language_weights: weight {weight!r} of {language!r} is not a number"
            ) from err
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"--caption_language_weights: weight of {language!r} must be >= 0, got {value}")
        weights[normalize_language(language, "--caption_language_weights")] = value
    if weights and not any(weights.values()):
        raise ValueError("--caption_language_weights: every weight is 0")
    return weights


def choose_caption(
    captions: Sequence[str],
    languages: Sequence[str] | None,
    generator: torch.Generator,
    language_weights: Mapping[str, float] | None = None,
) -> str:
    """One caption: a language among those present (probability ∝ its weight, 1 for unlisted languages),
    then one of its captions, uniformly. One language: a caption uniformly (the draw of a monolingual
    corpus does not change with languages)."""
    distinct = list(dict.fromkeys(languages)) if languages is not None else []
    if len(distinct) > 1:
        weights = torch.tensor(
            [float((language_weights or {}).get(lang, 1.0)) for lang in distinct], dtype=torch.float64
        )
        if weights.sum() <= 0:  # every language present has weight 0: fall back to all of them
            weights = torch.ones(len(distinct), dtype=torch.float64)
        language = distinct[int(torch.multinomial(weights, 1, generator=generator))]
        captions = [c for c, lang in zip(captions, languages) if lang == language]
    if len(captions) == 1:
        return captions[0]
    return captions[int(torch.randint(len(captions), (1,), generator=generator))]


class SupClapCollator:
    """Turn a list of items into the keyword arguments of ``ClapModel.forward``.

    Returns ``{"input_ids", "attention_mask", "input_features", "is_longer", "return_loss"}`` (no
    ``labels``: the Trainer would treat them as targets). ``None`` items (bad samples skipped by
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
    """

    def __init__(
        self,
        processor: ClapProcessor,
        max_text_length: int = 64,
        caption_choice: Literal["random", "first"] = "random",
        seed: int = 0,
        return_loss: bool = True,
        language_weights: Mapping[str, float] | Sequence[str] | None = None,
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
        self.epoch = 0
        self._calls = 0

    def set_epoch(self, epoch: int) -> None:
        """Epoch used for items that do not carry one (raw rows)."""
        self.epoch = int(epoch)

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
            audio_inputs = clap_features(self.feature_extractor, audios)
        finally:
            np.random.set_state(state)

        return {
            "input_ids": text_inputs["input_ids"],
            "attention_mask": text_inputs["attention_mask"],
            "input_features": audio_inputs["input_features"].to(torch.float32),
            "is_longer": audio_inputs["is_longer"].to(torch.bool),
            "return_loss": self.return_loss,
        }
