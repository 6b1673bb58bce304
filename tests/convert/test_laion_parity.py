"""Parity from the waveform with LAION-CLAP's own code: HTSAT-tiny + RoBERTa, unfused and fused, and
HTSAT-tiny + BERT (converted to the dual-encoder family).

A ``laion_clap`` model with random weights, saved as LAION saves checkpoints, converted by
``supclap-convert``; demo-corpus clips and captions embedded by both (tests/convert/laion_parity.py says what
is measured). Needs the LAION-CLAP environment (numpy < 2, so not the project's): ``SUPCLAP_LAION_PYTHON``
names its python (``.ci/run`` builds it); without it these tests are skipped, saying how to build it. Set
``SUPCLAP_PARITY_REPORT`` to a folder to keep every number (``parity_<kind>.json``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from laion_parity import BUILD_HINT, laion_python, measure

PYTHON = laion_python()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        PYTHON is None, reason=f"needs the LAION-CLAP environment (SUPCLAP_LAION_PYTHON): {BUILD_HINT}"
    ),
]


@pytest.mark.parametrize("kind", ["unfused", "fused"])
def test_parity_from_the_waveform(kind, tmp_path):
    report = measure(PYTHON, tmp_path, fused=kind == "fused")
    if folder := os.environ.get("SUPCLAP_PARITY_REPORT"):
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / f"parity_{kind}.json").write_text(json.dumps(report, indent=1))

    assert report["synthetic_names_and_shapes_match_laion_clap"]  # helpers/laion.py stays LAION's
    assert report["token_ids_identical"]
    exact = report["exact"]
    assert exact["audio_max_abs"] <= 1e-5 and exact["text_max_abs"] <= 1e-5, exact
    assert exact["ranking_identical"]
    ours = report["log_mel"]["LaionClapFeatureExtractor"]
    assert ours["max_dB"] <= 1e-4 and ours["is_longer"] == report["laion_is_longer"], ours

    # transformers' conversion script: the audio weights land as exactly; the text tower differs by its
    # LayerNorm epsilon alone (ClapTextConfig's 1e-12 instead of roberta-base's 1e-5).
    hub = report["hub"]["weights_alone (LAION's inputs)"]
    assert hub["audio_max_abs"] <= 1e-5, hub
    assert hub["text_max_abs"] == pytest.approx(
        report["hub"]["exact mapping, text layer_norm_eps 1e-12"], rel=1e-2, abs=1e-7
    )


def test_parity_from_the_waveform_with_a_bert_text_tower(tmp_path):
    """BERT goes to the dual encoder (ClapAudioModel + BertModel, pooler outputs, LAION's ReLU MLPs): the
    same bound as RoBERTa's, LAION's captions tokenized by LAION's own BERT tokenizer call."""
    report = measure(PYTHON, tmp_path, fused=False, tmodel="bert")
    if folder := os.environ.get("SUPCLAP_PARITY_REPORT"):
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "parity_unfused_bert.json").write_text(json.dumps(report, indent=1))

    assert report["model_class"] == "SupClapDualEncoderModel"
    assert report["synthetic_names_and_shapes_match_laion_clap"]
    assert report["token_ids_identical"]
    exact = report["exact"]
    assert exact["audio_max_abs"] <= 1e-5 and exact["text_max_abs"] <= 1e-5, exact
    assert exact["ranking_identical"]
