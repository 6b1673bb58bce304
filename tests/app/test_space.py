"""The Space that serves a pushed model: its files, pushed next to the model on the stand-in Hub, the model
card linking it, and the app started from the pulled copy (its own code, the model by its Hub id)."""

from __future__ import annotations

import shutil
from importlib import metadata

import pytest
import yaml
from gradio_client import Client
from helpers.app_server import AppServer
from helpers.cli import REPO, run_script
from helpers.hub_server import HubServer
from transformers import AutoModel, AutoProcessor

from modeling_supclap.hub import demo_text, with_demo_link
from modeling_supclap.inference import EmbeddingIndex
from modeling_supclap.space import PACKAGE_DIR, app_source, space_requirements, write_space_files

TOKEN = "hf_space_test_token_0123456789abcdef"


def _front_matter(readme: str) -> dict:
    return yaml.safe_load(readme.split("---\n")[1])


def test_the_repositorys_app_py_is_the_spaces_app_for_the_demo_model():
    assert (REPO / "app.py").read_text() == app_source(None)


def test_space_files_name_the_model_gradio_and_the_packages_requirements(tmp_path):
    folder = write_space_files(tmp_path / "space", "ns/tiny", "ns/tiny-demo")
    assert "MODEL_NAME_OR_PATH = 'ns/tiny'" in (folder / "app.py").read_text()
    meta = _front_matter((folder / "README.md").read_text(encoding="utf-8"))
    assert {key: meta[key] for key in ("sdk", "sdk_version", "app_file", "models")} == {
        "sdk": "gradio",
        "sdk_version": metadata.version("gradio"),
        "app_file": "app.py",
        "models": ["ns/tiny"],
    }
    required = [line for line in (folder / "requirements.txt").read_text().splitlines() if line[:1] != "#"]
    assert required == [r for r in metadata.requires("supclap") if "extra ==" not in r]
    assert required == [line for line in space_requirements().splitlines() if line[:1] != "#"]
    copied = {p.relative_to(folder / "modeling_supclap") for p in (folder / "modeling_supclap").rglob("*.py")}
    package = {p.relative_to(PACKAGE_DIR) for p in PACKAGE_DIR.rglob("*.py")}
    assert copied == package and not list(folder.rglob("__pycache__"))
    template = folder / "modeling_supclap" / "templates" / "model_card.md"
    assert not template.is_symlink() and template.read_text() == (REPO / "model_card.md").read_text()


def test_the_card_links_the_space_in_its_try_it_section():
    card = "# m\n\n## Try it\n\n" + demo_text("ns/m") + "\n\n## Use\n\ncode\n"
    linked = with_demo_link(card, "ns/m", "https://hub/spaces/ns/m-demo")
    assert linked == card.replace(demo_text("ns/m"), demo_text("ns/m", "https://hub/spaces/ns/m-demo"))
    assert "[the demo Space](https://hub/spaces/ns/m-demo)" in linked
    older = "# m\n\n## Use\n\ncode\n"  # a card written before the section existed
    assert (
        with_demo_link(older, "ns/m", "u")
        == "# m\n\n## Try it\n\n" + demo_text("ns/m", "u") + "\n\n## Use\n\ncode\n"
    )


@pytest.mark.slow
def test_the_space_pushed_next_to_the_model_runs_from_its_pulled_copy(app_model, app_index, tmp_path):
    folder = tmp_path / "to_push"
    shutil.copytree(app_model, folder)
    with HubServer(tokens={TOKEN: "ns"}) as hub:
        env = hub.client_env(tmp_path / "hf_home", TOKEN)
        push = run_script(
            ["-m", "modeling_supclap.cli.push", "--output_dir", str(folder), "--hub_model_id", "ns/tiny"]
            + ["--hub_space_id", "ns/tiny-demo"],
            env=env,
        )
        assert push.returncode == 0, push.stderr[-3000:]
        assert "and its demo app to the Space ns/tiny-demo" in push.stdout
        card = hub.files("ns/tiny")["README.md"].decode()
        assert f"[the demo Space]({hub.url}/spaces/ns/tiny-demo)" in card
        space_files = hub.files("spaces/ns/tiny-demo")
        assert {"app.py", "requirements.txt", "README.md", "modeling_supclap/app/ui.py"} <= set(space_files)

        pulled = tmp_path / "pulled"
        pull = run_script(
            ["-c", "import sys, huggingface_hub as h; h.snapshot_download(sys.argv[1], repo_type='space', "
             "local_dir=sys.argv[2])", "ns/tiny-demo", str(pulled)],
            env=env,
        )  # fmt: skip
        assert pull.returncode == 0, pull.stderr[-3000:]
        # The Space runs `python app.py`: its own copy of the package, the model by its Hub id.
        serve_env = {**env, "PYTHONPATH": None}
        args = ["--index", str(app_index), "--device", "cpu"]
        with AppServer(args, tmp_path / "space.log", command=["app.py"], cwd=pulled, env=serve_env) as server:
            hits, _ = Client(server.url, verbose=False, download_files=False).predict(
                "a beep", 3, api_name="/search"
            )
            log = server.log()
    assert f"supclap-app: the supclap code in {pulled / 'modeling_supclap'}" in log
    assert "supclap-app: serving ns/tiny on cpu with the index" in log
    model, processor = AutoModel.from_pretrained(app_model), AutoProcessor.from_pretrained(app_model)
    expected = EmbeddingIndex.load(app_index).search_text(model, processor, "a beep", 3)
    assert [hit["key"] for hit in hits] == [hit.key for hit in expected]
