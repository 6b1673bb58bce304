"""The app's answers without the page: zero-shot equals the pipeline, and every bad input is one message."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly
from transformers import pipeline

from modeling_supclap.app.inputs import UserFacingError, parse_labels, parse_query, read_upload
from modeling_supclap.app.service import DemoService

LABELS = ["a high beep", "a low hum", "white noise", "a chirp"]


@pytest.fixture(scope="module")
def service(app_model) -> DemoService:
    return DemoService.load(str(app_model), device="cpu", max_audio_seconds=5.0)


def test_zero_shot_gives_the_pipelines_probabilities(service, app_model, uploads):
    answer = service.zero_shot(str(uploads["clip"]), ", ".join(LABELS))
    classifier = pipeline("zero-shot-audio-classification", model=str(app_model))
    audio, rate = sf.read(uploads["clip"], dtype="float32")
    assert rate == service.sampling_rate
    expected = {entry["label"]: entry["score"] for entry in classifier(audio, candidate_labels=LABELS)}
    assert list(answer.probabilities) == LABELS  # in the order typed
    np.testing.assert_allclose(
        [answer.probabilities[label] for label in LABELS], [expected[x] for x in LABELS]
    )
    assert answer.note == ""


def test_a_long_upload_uses_its_first_seconds_says_so_and_answers_the_same_every_time(service, uploads):
    first = service.zero_shot(str(uploads["ten_minutes"]), "rain, a hum")
    second = service.zero_shot(str(uploads["ten_minutes"]), "rain, a hum")
    assert first == second  # the extractor's crop of the 5 s kept is seeded
    assert "`ten_minutes.wav` is 10 min 0 s long: only its first 5.0 s were used." in first.note
    assert "2 s window" in first.note


def test_read_upload_decodes_only_the_first_seconds_to_mono_at_the_models_rate(uploads):
    upload = read_upload(uploads["ten_minutes"], 16000, max_seconds=3.0)
    assert upload.waveform.shape == (3 * 16000,) and upload.waveform.dtype == np.float32
    assert (upload.file_seconds, upload.used_seconds, upload.truncated) == (600.0, 3.0, True)
    stereo, rate = sf.read(uploads["ten_minutes"], frames=3 * 8000, dtype="float32")
    assert rate == 8000 and stereo.shape == (3 * 8000, 2)
    np.testing.assert_allclose(upload.waveform, resample_poly(stereo.mean(axis=1), 2, 1), atol=1e-6)


@pytest.mark.parametrize(
    ("upload", "message"),
    [
        ("text", "`notes.txt` is not an audio file this app can read. Upload WAV, FLAC, OGG or MP3 audio"),
        ("text_named_wav", "`notes.wav` is not an audio file this app can read."),
        ("empty", "`empty.wav` holds no audio samples."),
        (None, "Upload or record a clip first."),
    ],
)
def test_an_unusable_upload_is_one_message_naming_it(service, uploads, upload, message):
    with pytest.raises(UserFacingError) as caught:
        service.zero_shot(None if upload is None else str(uploads[upload]), "rain, dog")
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize("labels", ["", "  ", " , ,", None])
def test_an_empty_label_list_is_one_message(service, uploads, labels):
    with pytest.raises(UserFacingError, match="Type at least one label"):
        service.zero_shot(str(uploads["clip"]), labels)


def test_labels_are_trimmed_and_deduplicated_and_one_label_is_explained(service, uploads):
    assert parse_labels(" dog,rain ,, dog, siren ") == ["dog", "rain", "siren"]
    with pytest.raises(UserFacingError, match="at most 50"):
        parse_labels(",".join(f"label {i}" for i in range(51)))
    answer = service.zero_shot(str(uploads["clip"]), "dog")
    assert answer.probabilities == {"dog": pytest.approx(1.0)}
    assert "With one label its probability is always 1" in answer.note


def test_queries_are_trimmed_and_an_empty_or_overlong_one_is_one_message():
    assert parse_query("  a dog barks \n") == "a dog barks"
    for empty in ("", "   ", None):
        with pytest.raises(UserFacingError, match="Type what you are looking for"):
            parse_query(empty)
    with pytest.raises(UserFacingError, match="at most 500"):
        parse_query("beep " * 200)
