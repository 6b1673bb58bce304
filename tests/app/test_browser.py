"""The demo app in a real browser: headless Chromium driven by Selenium against the app on a free port."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import soundfile as sf
from helpers.app_server import AppServer
from helpers.browser import Browser, DemoPage, browser_missing
from transformers import pipeline

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(browser_missing() is not None, reason=str(browser_missing())),
]

LABELS = ["a high beep", "a low hum", "white noise"]
# Where the tests' screenshots go (default: the test's temporary folder).
SCREENSHOTS = os.environ.get("SUPCLAP_APP_SCREENSHOTS")


@pytest.fixture(scope="module")
def served(app_model, tmp_path_factory):
    logs = tmp_path_factory.mktemp("app_logs")
    args = ["--model_name_or_path", str(app_model), "--device", "cpu", "--max_audio_seconds", "5"]
    with AppServer(args, logs / "app.log") as server:
        yield server


@pytest.fixture(scope="module")
def page(served, tmp_path_factory):
    folder = tmp_path_factory.mktemp("browser")
    with Browser(folder / "profile", folder / "chromedriver.log") as browser:
        page = DemoPage(browser.driver, served.url)
        page.open()
        yield page


def _screenshot(page: DemoPage, name: str, tmp_path: Path) -> None:
    page.screenshot(Path(SCREENSHOTS or tmp_path) / f"app_{name}.png")


def test_the_page_names_the_model_it_serves(page, app_model):
    assert f"Model {app_model} on cpu" in page.header()


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
