"""Zero-shot classification of an encoded corpus: prompts from class labels, one per language if asked.

The accuracy math is the ``zero_shot`` ``evaluate`` module (``metrics/``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import ProcessorMixin

from .encode import EncodedCorpus, encode_texts
from .metrics import compute_zero_shot_metrics

DEFAULT_PROMPT_TEMPLATE = "This is a sound of {label}."


def load_zero_shot_templates(path: str | Path) -> dict[str, dict[str, Any]]:
    """A ``--zero_shot_templates`` JSON file as ``{language: {"template": str, "labels": {label: name}}}``.

    Each language maps to a prompt with ``{label}``, or to ``{"template": ..., "labels": {...}}`` where
    ``labels`` gives the class names in that language (labels not listed keep their own name).
    """
    from ..data.captions import normalize_language

    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise ValueError(f"--zero_shot_templates {path}: cannot read it ({err})") from err
    except ValueError as err:
        raise ValueError(f"--zero_shot_templates {path}: not valid JSON ({err})") from err
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"--zero_shot_templates {path}: expected a non-empty {{language: template}} object")
    templates: dict[str, dict[str, Any]] = {}
    for key, value in raw.items():
        language = normalize_language(key, f"--zero_shot_templates {path}")
        entry = {"template": value, "labels": {}} if isinstance(value, str) else value
        template = entry.get("template") if isinstance(entry, dict) else None
        labels = entry.get("labels", {}) if isinstance(entry, dict) else None
        if not isinstance(template, str) or "{label}" not in template:
            raise ValueError(
                f"--zero_shot_templates {path}: language {key!r} needs a template with '{{label}}'"
            )
        if not isinstance(labels, dict) or not all(isinstance(v, str) and v.strip() for v in labels.values()):
            raise ValueError(
                f"--zero_shot_templates {path}: language {key!r}: 'labels' must map labels to names"
            )
        templates[language] = {"template": template, "labels": dict(labels)}
    return templates


TEMPLATES_FILE_NAME = "zero_shot_templates.json"


def find_zero_shot_templates(explicit: str | None, data: str | None) -> dict[str, dict[str, Any]] | None:
    """``--zero_shot_templates`` if given, else the corpus folder's ``zero_shot_templates.json`` (the
    multilingual demo corpus writes one), else None."""
    if explicit:
        return load_zero_shot_templates(explicit)
    if data and (Path(data) / TEMPLATES_FILE_NAME).is_file():
        return load_zero_shot_templates(Path(data) / TEMPLATES_FILE_NAME)
    return None


@torch.no_grad()
def zero_shot_results(
    model: torch.nn.Module,
    processor: ProcessorMixin,
    corpus: EncodedCorpus,
    class_labels: Sequence[str] | None = None,
    template: str = DEFAULT_PROMPT_TEMPLATE,
    label_names: Mapping[str, str] | None = None,
) -> dict[str, Any] | None:
    """Zero-shot classification of every clip among ``class_labels`` (default: the labels seen).

    ``label_names``: what each label is called in the prompt (a translation), default the label itself.
    """
    known = [label for label in corpus.labels if label is not None]
    if not known:
        return None
    class_labels = sorted(set(known)) if class_labels is None else list(class_labels)
    if "{label}" not in template:
        raise ValueError(f"the prompt template must contain '{{label}}', got {template!r}")
    index = {label: i for i, label in enumerate(class_labels)}
    missing = sorted(set(known) - set(index))
    if missing:
        raise ValueError(f"clip labels {missing[:5]} are not among the class labels {class_labels[:10]}")
    names = [(label_names or {}).get(label, label) for label in class_labels]
    prompts = encode_texts(model, processor, [template.format(label=name) for name in names])
    keep = [i for i, label in enumerate(corpus.labels) if label is not None]
    predictions = (corpus.audio_embeds[keep] @ prompts.t()).argmax(dim=1)
    references = torch.tensor([index[corpus.labels[i]] for i in keep])
    results = compute_zero_shot_metrics(predictions.tolist(), references.tolist(), label_names=class_labels)
    results["chance_accuracy"] = 100.0 / len(class_labels)
    results["template"] = template
    return results
