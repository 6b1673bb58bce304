"""The app's API endpoints through ``gradio_client``, as a program would call them: /search, /zero_shot,
/similar, their messages for bad input, and 20 concurrent searches queued and all answered."""

from __future__ import annotations

import pytest
import soundfile as sf
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from helpers.cli import REPO
from transformers import AutoModel, AutoProcessor, pipeline

from modeling_supclap.inference import EmbeddingIndex

pytestmark = pytest.mark.slow

QUERIES = ["two short high beeps", "a low hum", "a dog barks", "rain on a roof", "a whistle rises"]


@pytest.fixture(scope="module")
def client(served) -> Client:
    return Client(served.url, verbose=False, download_files=False)


@pytest.fixture(scope="module")
def reference(app_model, app_index):
    model, processor = AutoModel.from_pretrained(app_model), AutoProcessor.from_pretrained(app_model)
    return EmbeddingIndex.load(app_index), model, processor


def test_the_three_endpoints_are_named(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert set(endpoints) == {"/search", "/zero_shot", "/similar"}


def test_search_returns_the_search_apis_hits(client, reference):
    index, model, processor = reference
    hits, note = client.predict("two short high beeps", 3, api_name="/search")
    expected = index.search_text(model, processor, "two short high beeps", 3)
    assert [hit["key"] for hit in hits] == [hit.key for hit in expected]
    assert [hit["score"] for hit in hits] == pytest.approx([hit.score for hit in expected], abs=1e-6)
    assert [hit["audio_file"] for hit in hits] == [hit.path for hit in expected]
    assert hits[0]["captions"] == expected[0].captions and hits[0]["rank"] == 1
    assert note == "The 3 clips of 8 that best match “two short high beeps”."


def test_zero_shot_returns_the_pipelines_probabilities(client, app_model, uploads):
    labels = ["a high beep", "a low hum", "white noise"]
    shown, note = client.predict(handle_file(uploads["clip"]), ", ".join(labels), api_name="/zero_shot")
    audio, _ = sf.read(uploads["clip"], dtype="float32")
    classifier = pipeline("zero-shot-audio-classification", model=str(app_model))
    expected = {entry["label"]: entry["score"] for entry in classifier(audio, candidate_labels=labels)}
    assert {entry["label"]: entry["confidence"] for entry in shown["confidences"]} == pytest.approx(expected)
    assert note == ""


def test_similar_of_a_ten_minute_upload_uses_its_first_seconds_and_says_so(client, reference, uploads):
    hits, note = client.predict(handle_file(uploads["ten_minutes"]), 4, api_name="/similar")
    assert len(hits) == 4
    assert note.endswith("`ten_minutes.wav` is 10 min 0 s long: only its first 5.0 s were used.")


@pytest.mark.parametrize(
    ("endpoint", "arguments", "message"),
    [
        ("/search", ("   ", 3), "Type what you are looking for, e.g. 'a dog barks twice'."),
        ("/zero_shot", ("clip", " , "), "Type at least one label"),
        ("/zero_shot", ("text", "dog, rain"), "`notes.txt` is not an audio file this app can read."),
        ("/similar", ("empty", 3), "`empty.wav` holds no audio samples."),
        ("/similar", (None, 3), "Upload or record a clip first."),
    ],
)
def test_bad_input_is_one_message_not_a_traceback(client, uploads, endpoint, arguments, message):
    first, rest = arguments[0], arguments[1:]
    if first in uploads:
        first = handle_file(uploads[first])
    with pytest.raises(AppError) as caught:
        client.predict(first, *rest, api_name=endpoint)
    assert str(caught.value).startswith(message)
    assert "Traceback" not in str(caught.value)


def test_twenty_concurrent_searches_are_queued_and_all_answered(client, reference):
    index, model, processor = reference
    queries = [QUERIES[i % len(QUERIES)] for i in range(20)]
    jobs = [client.submit(query, 3, api_name="/search") for query in queries]
    answers = [job.result(timeout=300) for job in jobs]
    for query, (hits, _) in zip(queries, answers):
        assert [hit["key"] for hit in hits] == [
            hit.key for hit in index.search_text(model, processor, query, 3)
        ]


def test_the_usage_guides_client_example_runs_as_written(served, capsys):
    """docs/USAGE.md's gradio_client block, run as pasted (only its URL pointed at this test's app)."""
    usage = (REPO / "docs" / "USAGE.md").read_text()
    section = usage.split("## Try it in a browser: supclap-app\n", 1)[1].split("\n## ", 1)[0]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert code.count('Client("http://127.0.0.1:7860")') == 1
    exec(compile(code.replace("http://127.0.0.1:7860", served.url), "USAGE.md", "exec"), {})
    loaded, *printed = capsys.readouterr().out.splitlines()
    assert loaded == f"Loaded as API: {served.url}/"  # gradio_client's own line
    assert printed[0] == "The 3 clips of 8 that best match “two short high beeps”."
    assert len(printed) == 6 and printed[1].startswith("1 ") and printed[5].startswith("['test/")
