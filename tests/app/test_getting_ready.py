"""The getting-ready page: the app's address answers while the demo is built, then frees the port."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

import pytest
from helpers.processes import free_port

from modeling_supclap.app.getting_ready import GettingReadyPage, serving_address


def _get(url: str) -> urllib.error.HTTPError:
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(url, timeout=10)
    return answer.value


def test_the_page_lists_the_steps_with_503_until_closed_then_the_port_is_free():
    port = free_port()
    with GettingReadyPage("127.0.0.1", port) as page:
        page.step("training the demo model (missing; done once): python -m x <y>")
        answer = _get(f"http://127.0.0.1:{port}/any/path")
        body = answer.read().decode()
        assert answer.code == 503 and answer.headers["Retry-After"] == "2"
        assert 'http-equiv="refresh"' in body and "supclap-app is getting ready" in body
        assert "training the demo model (missing; done once): python -m x &lt;y&gt;" in body  # escaped
        page.step("loading the model m")
        assert "<li>loading the model m" in _get(f"http://127.0.0.1:{port}/").read().decode()
    with socket.socket() as sock:  # the app can take the port now, as Gradio binds it (SO_REUSEADDR)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))


def test_a_taken_address_is_said_and_nothing_is_served(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with GettingReadyPage("127.0.0.1", port) as page:
            page.step("still recorded")
    assert f"no getting-ready page on 127.0.0.1:{port}" in capsys.readouterr().out


def test_the_address_is_gradios(monkeypatch):
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    monkeypatch.delenv("GRADIO_SERVER_PORT", raising=False)
    assert serving_address(None, None) == ("127.0.0.1", 7860)
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7861")
    assert serving_address(None, None) == ("0.0.0.0", 7861)
    assert serving_address("localhost", 9000) == ("localhost", 9000)
