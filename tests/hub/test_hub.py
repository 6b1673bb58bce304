"""Pushing to and loading from the Hub, through the real huggingface_hub/transformers code, on a stand-in Hub.

The Hub itself is unreachable here, so ``hub_server.HubServer`` (a test double of the Hub HTTP API for
huggingface_hub 2.4) runs in this process. Every client that downloads or loads from it runs in a
subprocess with ``HF_ENDPOINT``, a fresh ``HF_HOME`` and ``HF_TOKEN`` set in its environment; pushes
(``supclap-push``'s and ``train_supclap.py``'s ``main``, ``push_output_folder``) run in this process, with
``hub_server.pushes_from_this_process``.

Why subprocesses for the clients that load: huggingface_hub reads its configuration once, at import time —
``constants.ENDPOINT``, ``HUGGINGFACE_CO_URL_TEMPLATE``, ``HF_URL_HOSTS``, ``HF_HUB_OFFLINE`` (conftest sets
``HF_HUB_OFFLINE=1`` for the whole session before anything is imported), ``HF_HOME``, ``HF_HUB_CACHE``,
``HF_TOKEN_PATH``, ``HF_XET_CACHE`` — and ``HfApi`` instances freeze ``endpoint`` when they are built
(``transformers.utils.hub.hf_api()`` caches one for the whole process); transformers reads
``HF_MODULES_CACHE`` at import and puts it on ``sys.path`` for remote code. A fresh process reads the
environment the way a user's does, and lets ``trust_remote_code=True`` loading run where
``modeling_supclap`` was never imported. A push only needs ``HfApi`` (built at each push from
``constants.ENDPOINT``, offline mode and the token files, which that context patches and restores) and
``HF_TOKEN`` (read at each call); ``supclap-push``'s entry point is kept as a process in ``test_cli_push``.
"""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.cli import REPO, run_in_process, run_script, tiny_train_args
from helpers.hub_server import HubServer, point_clients_at, pushes_from_this_process

# Planted token of the user "ns": it may travel in Authorization headers and nowhere else.
TOKEN = "hf_SupClapPlantedToken0123456789abcdefXYZ"
OTHER_TOKEN = "hf_OtherUserToken0123456789abcdefXYZ"
TEXTS = ["two short high beeps", "a low hum with noise"]
RESULTS = {
    "retrieval": {
        "t2a_R@1": 12.5,
        "t2a_R@5": 50.0,
        "t2a_R@10": 87.5,
        "t2a_mAP@10": 30.25,
        "a2t_R@1": 10.0,
        "a2t_R@5": 45.0,
        "a2t_R@10": 80.0,
        "a2t_mAP@10": 22.5,
        "chance": {"t2a_R@1": 12.5, "a2t_R@1": 5.0},
    },
    "zero_shot": {
        "accuracy": 50.0,
        "balanced_accuracy": 50.0,
        "template": "This is a sound of {label}.",
        "chance_accuracy": 10.0,
    },
    "num_clips": 8,
    "num_captions": 20,
}
MODEL_FILES = {
    "model.safetensors",
    "config.json",
    "modeling_supclap.py",
    "configuration_supclap.py",
    "losses.py",
    "processor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "README.md",
}

# Client side of the round trip: load the pushed repo with remote code only (modeling_supclap is never
# imported), embed the given inputs, read the card, and check that the repo is closed to anonymous callers.
VERIFY_CLIENT = r"""
import json, sys, tempfile
import numpy as np, torch
from huggingface_hub import HfApi, ModelCard, hf_hub_download
from transformers import AutoModel, AutoProcessor

repo_id, inputs_path, out_path = sys.argv[1:4]
api = HfApi()
card = ModelCard.load(repo_id)
model = AutoModel.from_pretrained(repo_id, trust_remote_code=True).eval()
processor = AutoProcessor.from_pretrained(repo_id, trust_remote_code=True)
inputs = torch.load(inputs_path)
np.random.seed(0)
text = processor(text=inputs["texts"], return_tensors="pt", padding=True)
audio = processor(audio=[inputs["audio"].numpy()], sampling_rate=inputs["sampling_rate"], return_tensors="pt")
with torch.no_grad():
    text_embeds = model.get_text_features(**text).pooler_output
    audio_embeds = model.get_audio_features(input_features=audio["input_features"]).pooler_output
torch.save({"input_ids": text["input_ids"], "input_features": audio["input_features"],
            "text_embeds": text_embeds, "audio_embeds": audio_embeds}, out_path)

anonymous = {}
for name, call in {
    "download": lambda: hf_hub_download(repo_id, "config.json", token=False, cache_dir=tempfile.mkdtemp()),
    "info": lambda: HfApi(token=False).model_info(repo_id),
}.items():
    try:
        call()
        anonymous[name] = None
    except Exception as err:
        anonymous[name] = type(err).__name__
print(json.dumps({
    "files": sorted(api.list_repo_files(repo_id)),
    "private": api.model_info(repo_id).private,
    "model_module": type(model).__module__,
    "supclap_imported": "modeling_supclap" in sys.modules,
    "eval_results": [[r.task_type, r.metric_type, r.metric_value] for r in card.data.eval_results or []],
    "anonymous": anonymous,
}))
"""

PUSH_TO_HUB_CLIENT = r"""
import json, sys
import torch
import modeling_supclap
from transformers import AutoModel, AutoProcessor

folder, repo_id = sys.argv[1:3]
model = modeling_supclap.SupClapModel.from_pretrained(folder)
processor = AutoProcessor.from_pretrained(folder)
model.push_to_hub(repo_id, private=True)
processor.push_to_hub(repo_id)
reloaded = AutoModel.from_pretrained(repo_id, trust_remote_code=True)
theirs = reloaded.state_dict()
print(json.dumps({
    "model_class": type(reloaded).__name__,
    "max_diff": max((v - theirs[k]).abs().max().item() for k, v in model.state_dict().items()),
    "same_keys": sorted(model.state_dict()) == sorted(theirs),
    "vocab_equal": AutoProcessor.from_pretrained(repo_id).tokenizer.get_vocab()
    == processor.tokenizer.get_vocab(),
}))
"""


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """The stand-in Hub, with this process' environment pointing subprocess clients at it, and this process'
    pushes going to it."""
    with HubServer(tokens={TOKEN: "ns", OTHER_TOKEN: "other"}) as server:
        point_clients_at(server, tmp_path / "hf_home", TOKEN, monkeypatch)
        with pushes_from_this_process(server, tmp_path / "hf_home"):
            yield server


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> Path:
    """A saved tiny SupClap model + demo processor + rendered card (with the token among the arguments)."""
    from modeling_supclap import SupClapConfig, SupClapModel
    from modeling_supclap.demo import build_demo_corpus, build_demo_processor
    from modeling_supclap.hub import write_model_card

    tmp = tmp_path_factory.mktemp("hub_model")
    torch.manual_seed(0)
    config = SupClapConfig.tiny()
    model = SupClapModel(config).eval()
    corpus = build_demo_corpus(tmp / "c", num_clips=40)
    processor = build_demo_processor(corpus, config.audio_config, cache_dir=tmp / "p")
    folder = tmp / "model"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    write_model_card(
        folder,
        model.config,
        train_args={"learning_rate": 3e-3, "max_steps": 6, "hub_token": TOKEN},
        data_description="demo",
        results=RESULTS,
        repo_id="ns/supclap-demo",
    )
    return folder


def _client(script: str, *args) -> subprocess.CompletedProcess:
    """Run a client script in a fresh Python process (it reads HF_ENDPOINT/HF_HOME/HF_TOKEN at import)."""
    result = run_script(["-c", script, *map(str, args)], timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def _assert_token_kept_secret(server: HubServer, *texts: str) -> None:
    """The token is in Authorization headers only: not in any body, path, other header, stored blob, text."""
    assert any(req.header("Authorization") == f"Bearer {TOKEN}" for req in server.requests)
    for req in server.requests:
        assert TOKEN.encode() not in req.body, req.path
        assert TOKEN not in req.path
        assert all(TOKEN not in v for k, v in req.headers.items() if k.lower() != "authorization"), req.path
    for blob in (server.root / "blobs").iterdir():
        assert TOKEN.encode() not in blob.read_bytes(), blob
    for text in texts:
        assert TOKEN not in text


def test_stand_in_hub_itself(model_folder):
    """The double, with a bare HTTP client: errors keep the connection usable, writes and private reads
    need the token, and the card hub.py renders passes validate-yaml while a broken model-index does not."""
    card = (model_folder / "README.md").read_text()
    with HubServer(tokens={TOKEN: "ns"}) as server:
        conn = http.client.HTTPConnection("127.0.0.1", int(server.url.rsplit(":", 1)[1]), timeout=10)

        def call(method, path, payload=None, token=None):
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            conn.request(method, path, body=None if payload is None else json.dumps(payload), headers=headers)
            response = conn.getresponse()
            return response.status, response.headers, response.read()

        repo = {"name": "x", "organization": "ns", "visibility": "private"}
        assert call("POST", "/api/repos/create", repo)[0] == 401  # body sent, then the same connection:
        assert call("POST", "/api/repos/create", repo, token=TOKEN)[0] == 200
        assert call("POST", "/api/repos/create", repo, token=TOKEN)[0] == 409
        status, headers, _ = call("GET", "/api/models/ns/x")
        assert status == 401 and headers["X-Error-Code"] == "RepoNotFound"
        assert json.loads(call("GET", "/api/models/ns/x", token=TOKEN)[2])["private"] is True
        assert call("POST", "/api/validate-yaml", {"content": card, "repoType": "model"})[0] == 200
        broken = card.replace("    dataset:\n", "    datasets:\n", 1)
        status, _, body = call("POST", "/api/validate-yaml", {"content": broken, "repoType": "model"})
        assert status == 400 and "dataset" in json.loads(body)["errors"][0]["message"]
        conn.close()


@pytest.mark.slow
def test_push_output_folder_private_roundtrip(hub, model_folder, tmp_path):
    from transformers import AutoProcessor

    from modeling_supclap import SupClapModel
    from modeling_supclap.hub import push_output_folder

    assert push_output_folder(model_folder, "ns/supclap-demo", private=True) == "ns/supclap-demo"
    assert hub.repos["ns/supclap-demo"].private
    stored = hub.files("ns/supclap-demo")
    assert MODEL_FILES <= stored.keys()
    assert json.loads(stored["config.json"])["auto_map"]["AutoModel"] == "modeling_supclap.SupClapModel"
    assert stored["model.safetensors"] == (model_folder / "model.safetensors").read_bytes()

    # Reference outputs of the local model and processor on the same inputs as the client.
    processor = AutoProcessor.from_pretrained(model_folder)
    sampling_rate = processor.feature_extractor.sampling_rate
    audio = (0.1 * np.random.default_rng(0).standard_normal(sampling_rate // 2)).astype(np.float32)
    inputs, outputs = tmp_path / "inputs.pt", tmp_path / "outputs.pt"
    torch.save({"texts": TEXTS, "audio": torch.from_numpy(audio), "sampling_rate": sampling_rate}, inputs)
    report = json.loads(_client(VERIFY_CLIENT, "ns/supclap-demo", inputs, outputs).stdout.splitlines()[-1])
    assert MODEL_FILES <= set(report["files"]) and report["private"]
    assert report["model_module"].startswith("transformers_modules.") and not report["supclap_imported"]
    assert report["anonymous"] == {"download": "RepositoryNotFoundError", "info": "RepositoryNotFoundError"}
    results = {(task, metric): value for task, metric, value in report["eval_results"]}
    assert results[("audio-text-retrieval", "t2a_r_at_1")] == 12.5
    assert results[("audio-text-retrieval", "a2t_map_at_10")] == 22.5
    assert results[("zero-shot-audio-classification", "accuracy")] == 50.0

    remote = torch.load(outputs)
    model = SupClapModel.from_pretrained(model_folder).eval()
    np.random.seed(0)
    text = processor(text=TEXTS, return_tensors="pt", padding=True)
    features = processor(audio=[audio], sampling_rate=sampling_rate, return_tensors="pt")["input_features"]
    torch.testing.assert_close(remote["input_ids"], text["input_ids"], rtol=0, atol=0)
    torch.testing.assert_close(remote["input_features"], features, rtol=0, atol=0)
    with torch.no_grad():
        text_embeds = model.get_text_features(**text).pooler_output
        audio_embeds = model.get_audio_features(input_features=features).pooler_output
    torch.testing.assert_close(remote["text_embeds"], text_embeds)
    torch.testing.assert_close(remote["audio_embeds"], audio_embeds)
    _assert_token_kept_secret(hub)


@pytest.mark.slow
def test_transformers_push_to_hub(hub, model_folder):
    report = json.loads(_client(PUSH_TO_HUB_CLIENT, model_folder, "ns/pushed").stdout.splitlines()[-1])
    # (modeling_supclap is imported in that client, so transformers picks the registered local class.)
    assert report == {"model_class": "SupClapModel", "max_diff": 0.0, "same_keys": True, "vocab_equal": True}
    assert hub.repos["ns/pushed"].private
    assert MODEL_FILES <= hub.files("ns/pushed").keys()
    _assert_token_kept_secret(hub)


PUSH = ["-m", "modeling_supclap.cli.push"]  # supclap-push


@pytest.mark.slow
def test_cli_push(hub, model_folder, tmp_path, monkeypatch):
    """``supclap-push``: a push, then two failures. The push and the unreachable Hub run its ``main`` in this
    process; someone else's token runs the command as a process (its entry point: exit status, no
    traceback, the token printed nowhere)."""
    from huggingface_hub import constants

    from modeling_supclap.cli.push import main as push_main

    # A folder without a card: the CLI renders one from config.json and metrics.json before pushing.
    folder = shutil.copytree(model_folder, tmp_path / "no_card")
    (folder / "README.md").unlink()
    (folder / "metrics.json").write_text(json.dumps({"test": RESULTS}))
    result = run_in_process(push_main, ["--output_dir", str(folder), "--repo_id", "ns/cli", "--private"])
    assert result.returncode == 0, result.stderr[-4000:]
    assert "pushed" in result.stdout and "ns/cli" in result.stdout
    stored = hub.files("ns/cli")
    assert hub.repos["ns/cli"].private and MODEL_FILES | {"metrics.json"} <= stored.keys()
    card = stored["README.md"].decode()
    assert "t2a_r_at_1" in card and 'model="ns/cli"' in card
    _assert_token_kept_secret(hub, result.stdout, result.stderr)

    # Someone else's token cannot write to "ns", and the failure does not print that token either.
    # It ends in one message that says what to do, and the command to push again.
    monkeypatch.setenv("HF_TOKEN", OTHER_TOKEN)
    result = run_script([*PUSH, "--output_dir", str(model_folder), "--repo_id", "ns/cli-2"])
    assert result.returncode == 1 and "ns/cli-2" not in hub.repos
    assert "Traceback" not in result.stderr and "403" in result.stderr
    assert "The token cannot write to 'ns/cli-2'" in result.stderr
    assert f"supclap-push --output_dir {model_folder} --hub_model_id ns/cli-2" in result.stderr
    assert OTHER_TOKEN not in result.stdout + result.stderr
    # No Hub to reach (no network, or a wrong HF_ENDPOINT): the same, naming the address.
    with socket.socket() as sock, pytest.MonkeyPatch.context() as patch:
        sock.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{sock.getsockname()[1]}"  # bound, never listening: refused
        patch.setattr(constants, "ENDPOINT", nowhere)  # what HF_ENDPOINT gives a process at import
        result = run_in_process(push_main, ["--output_dir", str(model_folder), "--repo_id", "ns/cli-3"])
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert f"Could not reach {nowhere}: check the network" in result.stderr


@pytest.mark.slow
def test_train_push_to_hub(hub, small_corpus_cache, tmp_path):
    from modeling_supclap.cli.train import main as train_main

    out = tmp_path / "run"
    args = tiny_train_args(
        small_corpus_cache, out, "--push_to_hub", "--hub_model_id", "ns/demo", "--hub_private_repo"
    )
    result = run_in_process(train_main, args)  # the pushed repo and the folder are what is checked
    assert result.returncode == 0, result.stderr[-4000:]
    assert hub.repos["ns/demo"].private
    stored = hub.files("ns/demo")
    assert MODEL_FILES | {"metrics.json"} <= stored.keys()
    assert not any(p.startswith(("checkpoint-", "best/", "runs/")) for p in stored), sorted(stored)
    assert stored["model.safetensors"] == (out / "model.safetensors").read_bytes()
    assert "model-index" in stored["README.md"].decode()
    local = [p.read_bytes() for p in out.rglob("*") if p.is_file()]
    assert local and all(TOKEN.encode() not in data for data in local)
    _assert_token_kept_secret(hub, result.stdout, result.stderr)


def test_the_usage_docs_loss_table_is_the_loss_settings_definition():
    """docs/USAGE.md's table of loss fields is the one definition (SupClapLossSettings), not a copy that
    can drift: a field, default or meaning changed there must be regenerated into the docs."""
    from modeling_supclap.hub import loss_settings_table

    usage = (REPO / "docs" / "USAGE.md").read_text()
    table = usage.split("<!-- loss settings table: generated -->\n")[1].split("\n<!-- end of")[0]
    assert table == loss_settings_table()
    assert "| `svr_mode` | `'dynamic'` |" in table and "| `gradient_cache_chunk_size` | `0` |" in table


def test_a_card_names_local_corpora_and_models_by_their_folder_and_holds_no_local_path(tmp_path):
    """A push publishes the card: a run on /home/<user>/.../my_corpus must not carry that path, from any of
    the places a path can come from (the folder itself, the base model, the data, the converted checkpoint,
    a training argument, today's or a future one)."""
    from modeling_supclap import SupClapConfig
    from modeling_supclap.hub import render_model_card

    corpus, start = tmp_path / "sounds" / "my_corpus", tmp_path / "runs" / "stage1"
    corpus.mkdir(parents=True)
    card = str(
        render_model_card(
            SupClapConfig.tiny(),
            train_args={
                "output_dir": str(tmp_path / "out"),
                "learning_rate": 1e-3,
                "seed": 3,
                "logging_dir": str(tmp_path / "logs" / "tensorboard"),  # not an argument yet: any path is cut
                "extra_files": [str(tmp_path / "a.json"), "relative/b.json"],
                "notes": "~/private/notes.txt",
            },
            data_description=str(corpus),
            base_model=str(start),
            repo_id=str(tmp_path / "runs" / "stage2"),  # the folder the card is written into
            source_checkpoint={"file": str(tmp_path / "laion" / "630k-best.pt"), "sha256": "ab" * 32},
        )
    )
    assert "- Data: my_corpus" in card and "Fine-tuned from `stage1`" in card
    assert "`630k-best.pt`" in card and 'model="stage2"' in card and 'from_pretrained("stage2"' in card
    assert "| `logging_dir` | tensorboard |" in card and "['a.json', 'relative/b.json']" in card
    assert "| `notes` | notes.txt |" in card
    assert str(tmp_path) not in card and "~/" not in card
    assert "output_dir" not in card and "`learning_rate`" in card
    hub_card = str(
        render_model_card(SupClapConfig.tiny(), data_description="someone/sounds", base_model="laion/x")
    )
    assert "- Data: someone/sounds" in hub_card and "base_model: laion/x" in hub_card


def test_a_push_points_the_cards_code_at_the_repository_whatever_it_named():
    """The folder's name (cards of this version) or an absolute path of a folder that has moved since (cards
    written before): each model reference of the code becomes the repository; nothing else changes."""
    from modeling_supclap import SupClapConfig
    from modeling_supclap.hub import point_card_at, render_model_card

    current = str(render_model_card(SupClapConfig.tiny(), repo_id="run"))
    # pipeline(model=...), two from_pretrained calls and supclap-app's --model_name_or_path ("Try it")
    assert current.count('"run"') == 4
    legacy = current.replace('"run"', '"/home/someone/old/place/run"')
    expected = current.replace('"run"', '"ns/run"')
    assert point_card_at(current, "ns/run") == expected and point_card_at(legacy, "ns/run") == expected


@pytest.mark.slow
def test_a_folder_moved_before_the_push_publishes_no_local_path(hub, model_folder, tmp_path):
    """A run's card is written where it ran, the folder moves, then supclap-push publishes it: the pushed
    card's code loads the repository and no path of either place is in the card."""
    from modeling_supclap import SupClapConfig
    from modeling_supclap.hub import local_folder_reference, write_model_card

    where_it_ran = shutil.copytree(model_folder, tmp_path / "lab" / "run-17")
    write_model_card(
        where_it_ran,
        SupClapConfig.tiny(),
        train_args={"learning_rate": 3e-3, "output_dir": str(where_it_ran)},
        data_description=str(tmp_path / "lab" / "corpus"),
        base_model=str(tmp_path / "lab" / "run-16"),
        repo_id=local_folder_reference(where_it_ran),  # as train_supclap.py and supclap-convert write it
    )
    local_card = (where_it_ran / "README.md").read_text()
    assert 'model="run-17"' in local_card and str(tmp_path) not in local_card
    (tmp_path / "archive").mkdir()
    moved = shutil.move(str(where_it_ran), str(tmp_path / "archive" / "final"))
    from modeling_supclap.cli.push import main as push_main

    result = run_in_process(push_main, ["--output_dir", moved, "--hub_model_id", "ns/moved"])
    assert result.returncode == 0, result.stderr[-4000:]
    card = hub.files("ns/moved")["README.md"].decode()
    assert 'model="ns/moved"' in card and card.count('from_pretrained("ns/moved"') == 2
    assert str(tmp_path) not in card


def test_a_card_names_the_pretrained_towers_a_new_model_started_from(tmp_path):
    """Towers from checkpoints are not "trained from scratch": the card names them (a local folder by its
    name), and their Hub ids become the card's base models."""
    from modeling_supclap import SupClapConfig
    from modeling_supclap.hub import render_model_card

    local_audio = tmp_path / "towers" / "my_ast"
    local_audio.mkdir(parents=True)
    card = str(
        render_model_card(
            SupClapConfig.tiny(), tower_models={"audio": str(local_audio), "text": "cointegrated/sonar"}
        )
    )
    assert "Towers initialised from `my_ast` (audio) and `cointegrated/sonar` (text)" in card
    assert "base_model: cointegrated/sonar" in card and str(tmp_path) not in card
    assert "from scratch (random initialisation)" not in card
    both = str(render_model_card(SupClapConfig.tiny(), tower_models={"audio": "a/ced", "text": "b/sonar"}))
    assert "base_model:\n- a/ced\n- b/sonar" in both
    random_text = str(render_model_card(SupClapConfig.tiny(), tower_models={"audio": "a/ced", "text": None}))
    assert (
        "`a/ced` (audio); the other tower, the projections and the loss trained from scratch" in random_text
    )
