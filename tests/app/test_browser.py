"""The demo app in a real browser: headless Chromium driven by Selenium against the app on a free port."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
import soundfile as sf
from helpers.browser import Browser, DemoPage, browser_missing, screenshot_tabs
from transformers import AutoModel, AutoProcessor, pipeline

from modeling_supclap.inference import EmbeddingIndex

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(browser_missing() is not None, reason=str(browser_missing())),
]

LABELS = ["a high beep", "a low hum", "white noise"]
# Where the tests' screenshots go (default: the test's temporary folder).
SCREENSHOTS = os.environ.get("SUPCLAP_APP_SCREENSHOTS")


@pytest.fixture(scope="module")
def page(served, tmp_path_factory):
    folder = tmp_path_factory.mktemp("browser")
    with Browser(folder / "profile", folder / "chromedriver.log") as browser:
        page = DemoPage(browser.driver, served.url)
        page.open()
        yield page


def _screenshot(page: DemoPage, name: str, tmp_path: Path) -> None:
    page.screenshot(Path(SCREENSHOTS or tmp_path) / f"app_{name}.png")


def test_the_page_names_the_model_and_index_it_serves(page, app_model, app_index, small_corpus):
    header = page.header()
    assert f"Model {app_model} on cpu" in header
    assert f"Index {app_index} : 8 clips of {small_corpus} (split test ), embedded by {app_model} ." in header


def test_a_typed_query_lists_the_best_clips_each_with_a_playable_player(page, app_model, app_index, tmp_path):
    page.open()
    page.show_tab("Search")
    page.type_into("query", "two short high beeps")
    page.click("search_button")
    shown = page.wait_for_playable_results("search_results")
    _screenshot(page, "search", tmp_path)
    index = EmbeddingIndex.load(app_index)
    model, processor = AutoModel.from_pretrained(app_model), AutoProcessor.from_pretrained(app_model)
    expected = index.search_text(model, processor, "two short high beeps", 5)
    assert [hit["name"] for hit in shown] == [hit.key for hit in expected]
    assert [hit["rank"] for hit in shown] == [1, 2, 3, 4, 5]
    assert [hit["score"] for hit in shown] == pytest.approx([hit.score for hit in expected], abs=1e-3)
    assert [hit["caption"] for hit in shown] == [hit.captions[0] for hit in expected]
    for hit, clip in zip(shown, expected):
        assert hit["src"].endswith(f"gradio_api/file={clip.path}")
        assert hit["duration"] == pytest.approx(clip.duration, abs=0.01)  # the browser decoded the clip
    assert "The 5 clips of 8 that best match “two short high beeps”." in page.css("#search_note")[0].text


def test_an_empty_query_is_a_message_in_the_page(page):
    page.open()
    page.show_tab("Search")
    page.click("search_button")
    assert "Traceback" not in page.wait_for_toast("Type what you are looking for")


def test_an_uploaded_clip_finds_itself_first_among_similar_sounds(page, uploads, tmp_path):
    page.open()
    page.show_tab("Similar sounds")
    page.upload("similar_clip", uploads["clip"])
    page.wait_for_player("similar_clip")
    page.click("find_similar")
    shown = page.wait_for_playable_results("similar_results")
    _screenshot(page, "similar", tmp_path)
    assert shown[0]["name"] == f"test/{uploads['clip'].name}"
    assert shown[0]["score"] == pytest.approx(1.0, abs=1e-3)
    assert len(shown) == 5


def test_zero_shot_shows_the_pipelines_probabilities_as_a_bar_chart(page, app_model, uploads, tmp_path):
    page.open()
    page.show_tab("Zero-shot")
    page.upload("zero_shot_clip", uploads["clip"])
    page.wait_for_player("zero_shot_clip")
    page.type_into("labels", ", ".join(LABELS))
    page.click("classify")
    shown = page.wait_for_confidences()
    _screenshot(page, "zero_shot", tmp_path)
    audio, _ = sf.read(uploads["clip"], dtype="float32")
    classifier = pipeline("zero-shot-audio-classification", model=str(app_model))
    expected = {entry["label"]: entry["score"] for entry in classifier(audio, candidate_labels=LABELS)}
    assert set(shown) == set(LABELS)
    assert shown == pytest.approx(expected, abs=1e-6)


def test_a_text_file_is_refused_with_a_message_in_the_page(page, uploads, tmp_path):
    page.open()
    page.show_tab("Zero-shot")
    page.upload("zero_shot_clip", uploads["text_named_wav"])
    page.wait_for_player("zero_shot_clip")
    page.click("classify")
    message = page.wait_for_toast("is not an audio file this app can read")
    assert "notes.wav" in message and "Traceback" not in message
    _screenshot(page, "bad_upload", tmp_path)


def test_a_txt_file_is_refused_by_the_upload_area_and_classify_then_asks_for_a_clip(page, uploads, tmp_path):
    page.open()
    page.show_tab("Zero-shot")
    page.upload("zero_shot_clip", uploads["text"])
    warning = page.wait_for_toast("Invalid file type: notes.txt")  # Gradio's own check, in the browser
    assert "audio/wav" in warning
    _screenshot(page, "txt_upload", tmp_path)
    page.click("classify")
    assert "Traceback" not in page.wait_for_toast("Upload or record a clip first.")


def test_the_screenshot_tour_saves_one_answered_picture_per_tab(page, uploads, tmp_path):
    """What ``benchmarks/app_screenshots.py`` does to make the README's pictures."""
    shots = screenshot_tabs(page, tmp_path / "shots", "a low hum", uploads["clip"])
    assert shots == {tab: tmp_path / "shots" / f"{tab}.png" for tab in ("search", "zero_shot", "similar")}
    for path in shots.values():
        head = path.read_bytes()[:24]
        assert head[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", head[16:24])
        assert width >= 1000 and height >= 600, (path, width, height)
