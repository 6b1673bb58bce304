"""The app's answers without the page: zero-shot equals the pipeline, search and similar sounds are the search
API's, and every bad input (or an index of another model) is one message."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly
from transformers import pipeline

from modeling_supclap.app.inputs import UserFacingError, parse_labels, parse_query, read_upload
from modeling_supclap.app.service import MAX_TOP_K, DemoService
from modeling_supclap.app.ui import build_page
from modeling_supclap.inference import EmbeddingIndex

LABELS = ["a high beep", "a low hum", "white noise", "a chirp"]


@pytest.fixture(scope="module")
def service(app_model) -> DemoService:
    return DemoService.load(str(app_model), device="cpu", max_audio_seconds=5.0)


@pytest.fixture(scope="module")
def indexed_service(app_model, app_index) -> DemoService:
    """The service with its index (made by supclap-embed in a subprocess: the tests using it are slow)."""
    return DemoService.load(str(app_model), device="cpu", max_audio_seconds=5.0, index=app_index)


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


@pytest.mark.slow
def test_search_and_similar_are_the_search_apis_answers(indexed_service, app_index, uploads):
    index = EmbeddingIndex.load(app_index)
    answer = indexed_service.search("  two short high beeps ", 3)
    assert answer.hits == index.search_text(
        indexed_service.model, indexed_service.processor, "two short high beeps", 3
    )
    assert answer.note == "The 3 clips of 8 that best match “two short high beeps”."
    similar = indexed_service.similar(str(uploads["clip"]), 8)
    assert similar.hits == index.search_audio(
        indexed_service.model, indexed_service.processor, str(uploads["clip"]), 8
    )
    assert similar.hits[0].key == f"test/{uploads['clip'].name}"  # the clip itself is in the index
    assert similar.note == f"The 8 clips of 8 that sound most like `{uploads['clip'].name}`."


@pytest.mark.slow
def test_similar_to_a_long_upload_searches_its_first_seconds_and_says_so(indexed_service, uploads):
    answer = indexed_service.similar(str(uploads["ten_minutes"]), 2)
    assert len(answer.hits) == 2
    assert "only its first 5.0 s were used" in answer.note


@pytest.mark.slow
def test_the_default_labels_are_the_index_clips_labels(indexed_service, app_index):
    index = EmbeddingIndex.load(app_index)
    labels = {index.row(position)["label"] for position in range(len(index))}
    assert set(indexed_service.default_labels) == labels


@pytest.mark.slow
@pytest.mark.parametrize("top_k", [0, -1, MAX_TOP_K + 1, 2.5, None])
def test_a_result_count_out_of_range_is_one_message(indexed_service, top_k):
    with pytest.raises(UserFacingError, match=f"Ask for 1 to {MAX_TOP_K} results"):
        indexed_service.search("a beep", top_k)


@pytest.mark.slow
def test_more_results_than_clips_gives_every_clip(indexed_service):
    assert len(indexed_service.search("a beep", MAX_TOP_K).hits) == 8


@pytest.mark.slow
def test_an_index_of_another_model_is_named_in_the_page_and_refused_with_one_message(
    other_model, app_index, uploads
):
    service = DemoService.load(str(other_model), device="cpu", index=app_index)
    assert service.index_problem is not None
    for name in (str(other_model), str(service.index.model_name_or_path)):
        assert name in service.index_problem  # it names both models
    with pytest.raises(UserFacingError, match="cannot be searched with this app's model") as caught:
        service.search("a beep", 3)
    assert service.index_problem in str(caught.value)
    header = next(block for block in build_page(service).blocks.values() if block.elem_id == "served")
    assert "The index cannot be searched with this model." in header.value
    assert len(service.zero_shot(str(uploads["clip"]), "a, b").probabilities) == 2  # zero-shot still answers
