"""Headless Chromium driving the demo app's page, as a person would (Selenium, Debian's chromium and
chromium-driver, which ``.ci/run`` installs).

``chromedriver`` is started through ``processes.start`` (its own process group, which holds the Chromium
it launches), so leaving :class:`Browser` kills both whatever happened; every wait is bounded.
:class:`DemoPage` knows the page's elements (their ``elem_id``\\ s in ``modeling_supclap/app/ui.py``).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from .processes import free_port, kill_group, start

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
WAIT_SECONDS = 120.0  # the page's answers come from a model on a loaded 2-core machine


def browser_missing() -> str | None:
    """Why the browser tests cannot run here (None when they can): no Selenium, Chromium or chromedriver."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    if not any(shutil.which(name) for name in CHROMIUM_NAMES):
        return "no Chromium on PATH (Debian: apt-get install chromium chromium-driver; .ci/run does)"
    if not shutil.which("chromedriver"):
        return "no chromedriver on PATH (Debian: apt-get install chromium-driver; .ci/run does)"
    return None


def _wait_for_port(port: int, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"chromedriver exited with status {process.returncode}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"chromedriver did not listen on port {port} within {timeout:g} s")


class Browser:
    """A headless Chromium window (1280x1000) under a chromedriver of this test; ``.driver`` is Selenium's."""

    def __init__(self, profile_dir: Path, log_path: Path) -> None:
        self.profile_dir, self.log_path = profile_dir, log_path
        self.driver: Any = None

    def __enter__(self) -> Browser:
        from selenium import webdriver
        from selenium.webdriver.remote.client_config import ClientConfig
        from selenium.webdriver.remote.file_detector import UselessFileDetector

        port = free_port()
        self._log = open(self.log_path, "w")  # noqa: SIM115  (closed in __exit__)
        self._chromedriver = start(
            [shutil.which("chromedriver"), f"--port={port}"],
            across_tests=True,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_for_port(port, self._chromedriver, timeout=60)
            options = webdriver.ChromeOptions()
            options.binary_location = next(shutil.which(n) for n in CHROMIUM_NAMES if shutil.which(n))
            for argument in (
                "--headless=new",
                "--no-sandbox",  # CI runs as root
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--window-size=1280,1000",
                f"--user-data-dir={self.profile_dir}",
            ):
                options.add_argument(argument)
            url = f"http://127.0.0.1:{port}"
            self.driver = webdriver.Remote(url, options=options, client_config=ClientConfig(url, timeout=90))
            # chromedriver runs on this machine: file inputs take local paths (no upload to a grid)
            self.driver.file_detector = UselessFileDetector()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.driver is not None:
                self.driver.quit()  # bounded by the client's 90 s timeout
        except Exception:  # the group is killed next either way
            pass
        finally:
            kill_group(self._chromedriver)
            self._log.close()


class DemoPage:
    """The demo app's page in a :class:`Browser`: open it, fill a tab, read what it shows."""

    def __init__(self, driver: Any, url: str) -> None:
        self.driver, self.url = driver, url

    def wait(self, condition, timeout: float = WAIT_SECONDS, what: str = "the page") -> Any:
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait

        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.25).until(condition)
        except TimeoutException:
            raise AssertionError(f"waited {timeout:g} s for {what}; toasts: {self.toasts()}") from None

    def css(self, selector: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, selector)

    def open(self) -> None:
        self.driver.get(self.url)
        self.wait(lambda _: self.css("#served"), what="the page's header")

    def header(self) -> str:
        """The header's text, its white space collapsed (code spans break lines)."""
        return " ".join(self.css("#served")[0].text.split())

    def show_tab(self, name: str) -> None:
        from selenium.webdriver.common.by import By

        buttons = self.driver.find_elements(By.XPATH, f"//button[@role='tab' and normalize-space()='{name}']")
        assert buttons, f"no tab named {name!r}"
        buttons[0].click()

    def upload(self, component_id: str, path: Path) -> None:
        """Give ``path`` to the upload area of the Audio component ``component_id``."""
        self.wait(lambda _: self.css(f"#{component_id} input[type=file]"), what=f"#{component_id}'s upload")
        self.css(f"#{component_id} input[type=file]")[0].send_keys(str(path))

    def wait_for_player(self, component_id: str) -> None:
        """Until the Audio component ``component_id`` holds a clip (its player shows)."""
        self.wait(
            lambda _: self.css(f"#{component_id} audio, #{component_id} [data-testid='waveform-controls']"),
            what=f"the uploaded clip in #{component_id}",
        )

    def type_into(self, component_id: str, text: str) -> None:
        field = self.css(f"#{component_id} textarea, #{component_id} input")[0]
        field.clear()
        field.send_keys(text)

    def click(self, component_id: str) -> None:
        self.css(f"#{component_id}")[0].click()

    def confidences(self) -> dict[str, float]:
        """The bar chart's label -> probability (each bar's ``<meter>`` value, the unrounded number)."""
        sets = self.css("#probabilities [data-testid$='-confidence-set']")
        read = (
            "return [arguments[0].querySelector('dt').textContent, arguments[0].querySelector('meter').value]"
        )
        return dict(self.driver.execute_script(read, element) for element in sets)

    def wait_for_confidences(self) -> dict[str, float]:
        self.wait(lambda _: self.css("#probabilities [data-testid$='-confidence-set']"), what="the bar chart")
        return self.confidences()

    def results(self, component_id: str) -> list[dict[str, Any]]:
        """The result list in ``component_id``: per clip its rank, name, score, caption, and its player's
        source, whether the browser loaded its metadata (``readyState`` >= 1) and the duration it read."""
        read = """
            return Array.from(arguments[0].querySelectorAll('li.hit')).map(item => {
                const audio = item.querySelector('audio');
                return {rank: Number(item.dataset.rank), name: item.querySelector('.name').textContent,
                        score: Number(item.querySelector('.score').textContent),
                        caption: item.querySelector('.caption').textContent,
                        src: audio ? audio.src : null, ready: audio ? audio.readyState >= 1 : false,
                        duration: audio ? audio.duration : null};
            });"""
        return self.driver.execute_script(read, self.css(f"#{component_id}")[0])

    def wait_for_playable_results(self, component_id: str) -> list[dict[str, Any]]:
        """The result list once every player has loaded its clip's metadata from the server."""
        self.wait(lambda _: self.css(f"#{component_id} li.hit"), what=f"results in #{component_id}")
        self.wait(
            lambda _: all(hit["ready"] for hit in self.results(component_id)),
            what=f"every player in #{component_id} to load its clip",
        )
        return self.results(component_id)

    def toasts(self) -> list[str]:
        """The messages shown in the page's toasts (errors, warnings), newest last."""
        try:
            return [toast.text for toast in self.css("[data-testid='toast-body']")]
        except Exception:  # the page is gone or reloading
            return []

    def wait_for_toast(self, contains: str) -> str:
        return self.wait(
            lambda _: next((text for text in self.toasts() if contains in text), None),
            what=f"a message containing {contains!r}",
        )

    def screenshot(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.driver.save_screenshot(str(path))
        return path


def screenshot_tabs(
    page: DemoPage, folder: Path, query: str, clip: Path, labels: str | None = None
) -> dict[str, Path]:
    """One screenshot of each tab after it answered a question, as ``folder``/{search,zero_shot,similar}.png:
    Search for ``query``; Zero-shot of ``clip`` against ``labels`` (None: the page's default labels);
    Similar sounds of ``clip``. ``benchmarks/app_screenshots.py`` makes the README's pictures with it."""
    shots = {}
    page.open()
    page.show_tab("Search")
    page.type_into("query", query)
    page.click("search_button")
    page.wait_for_playable_results("search_results")
    shots["search"] = page.screenshot(folder / "search.png")
    page.open()
    page.show_tab("Zero-shot")
    page.upload("zero_shot_clip", clip)
    page.wait_for_player("zero_shot_clip")
    if labels is not None:
        page.type_into("labels", labels)
    page.click("classify")
    page.wait_for_confidences()
    shots["zero_shot"] = page.screenshot(folder / "zero_shot.png")
    page.open()
    page.show_tab("Similar sounds")
    page.upload("similar_clip", clip)
    page.wait_for_player("similar_clip")
    page.click("find_similar")
    page.wait_for_playable_results("similar_results")
    shots["similar"] = page.screenshot(folder / "similar.png")
    return shots
