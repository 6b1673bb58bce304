"""Security properties (see docs/SECURITY.md).

* weights are written as safetensors only, and nothing in the package unpickles arbitrary objects:
  every ``torch.load`` passes ``weights_only=True``, no pickle-family module is used;
* a malicious pickle (a ``pytorch_model.bin`` or a checkpoint's ``optimizer.pt``) is refused, not run;
* a Hub token in the environment never reaches logs, metrics, model cards, trackers or checkpoints.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from helpers.cli import REPO, run_script, tiny_train_args

from modeling_supclap import SupClapConfig, SupClapModel
from modeling_supclap.training import checkpointing

PICKLE_MODULES = {"pickle", "_pickle", "cPickle", "dill", "cloudpickle", "joblib", "marshal", "shelve"}
SOURCES = sorted(
    [*(REPO / "modeling_supclap").rglob("*.py"), REPO / "train_supclap.py", REPO / "eval_supclap.py"]
)


def _calls(tree: ast.AST):
    return (node for node in ast.walk(tree) if isinstance(node, ast.Call))


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


def _keyword(call: ast.Call, name: str):
    for keyword in call.keywords:
        if keyword.arg == name:
            return keyword.value.value if isinstance(keyword.value, ast.Constant) else "<expr>"
    return None


def test_package_source_never_unpickles_or_writes_pickled_weights():
    assert len(SOURCES) > 20
    problems = []
    for path in SOURCES:
        source = path.read_text()
        tree = ast.parse(source, filename=str(path))
        where = path.relative_to(REPO)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                problems += [
                    f"{where}:{node.lineno} imports {a.name}" for a in node.names if a.name in PICKLE_MODULES
                ]
            elif isinstance(node, ast.ImportFrom):
                if (node.module or "").split(".")[0] in PICKLE_MODULES:
                    problems.append(f"{where}:{node.lineno} imports from {node.module}")
                if node.module == "torch" and any(a.name == "load" for a in node.names):
                    problems.append(f"{where}:{node.lineno} imports torch.load under another name")
        for call in _calls(tree):
            name = _dotted(call.func)
            if name == "torch.load" and _keyword(call, "weights_only") is not True:
                problems.append(f"{where}:{call.lineno} torch.load without weights_only=True")
            if name.endswith("load") and _keyword(call, "allow_pickle") is True:
                problems.append(f"{where}:{call.lineno} allow_pickle=True")
            if _keyword(call, "safe_serialization") is False or _keyword(call, "use_safetensors") is False:
                problems.append(f"{where}:{call.lineno} {name}: pickled weights")
        # A plain-text net over the code (not comments), in case the AST walk misses a spelling.
        for lineno, line in enumerate(source.splitlines(), 1):
            code = line.split("#", 1)[0]
            if "torch.load(" in code and "weights_only=True" not in code:
                problems.append(f"{where}:{lineno} torch.load( without weights_only=True on its line")
            if "pickle." in code or "pickle import" in code:
                problems.append(f"{where}:{lineno} {code.strip()}")
    assert problems == []


class _Planted:
    """Unpickling this creates a marker file: proof that a loader ran attacker-chosen code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _malicious_pickle(path: Path, marker: Path) -> None:
    """A file in torch's own format (zip + pickle), as a real attacker would ship it."""
    torch.save({"weight": _Planted(marker)}, path)


def test_pickled_weights_are_refused_not_run(tmp_path):
    folder, marker = tmp_path / "model", tmp_path / "pwned"
    SupClapConfig.tiny().save_pretrained(folder)
    _malicious_pickle(folder / "pytorch_model.bin", marker)
    with pytest.raises(Exception):  # noqa: B017 - any refusal will do, running the payload will not
        SupClapModel.from_pretrained(folder)
    assert not marker.exists()
    torch.load(folder / "pytorch_model.bin", weights_only=False)  # control: the payload is live
    assert marker.exists()


def test_checkpoint_with_a_malicious_pickle_is_refused_not_run(tmp_path):
    folder, marker = tmp_path / "checkpoint-1", tmp_path / "pwned"
    torch.manual_seed(0)
    model = SupClapModel(SupClapConfig.tiny())
    model.save_pretrained(folder)
    _malicious_pickle(folder / "optimizer.pt", marker)
    for name in ("scheduler.pt", "rng_state_0.pt"):
        torch.save({}, folder / name)
    (folder / checkpointing.STATE_FILE).write_text(json.dumps({"step": 1}))
    (folder / checkpointing.COMPLETE_MARKER).write_text("ok\n")
    accelerator = SimpleNamespace(num_processes=1, process_index=0, unwrap_model=lambda m: m)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    with pytest.raises(checkpointing.CheckpointError, match=r"optimizer\.pt|could not be read"):
        checkpointing.load_checkpoint(folder, accelerator, model, optimizer, scheduler)
    assert not marker.exists()


TOKEN = "hf_SupClapPlantedSecretToken0123456789abcdef"


@pytest.mark.slow
def test_no_token_in_logs_metrics_cards_trackers_or_checkpoints(small_corpus_cache, tmp_path):
    out = tmp_path / "run"
    args = tiny_train_args(
        small_corpus_cache,
        out,
        "--max_steps",
        "2",
        "--eval_steps",
        "1",
        "--save_steps",
        "1",
        "--report_to",
        "tensorboard",
    )
    env = {"HF_TOKEN": TOKEN, "HUGGING_FACE_HUB_TOKEN": TOKEN}
    result = run_script(["train_supclap.py", *args], env=env)
    assert result.returncode == 0, result.stderr[-4000:]

    files = [p for p in out.rglob("*") if p.is_file()]
    names = {p.relative_to(out).as_posix() for p in files}
    # Everything a run writes is there: weights, card, metrics, tracker events, checkpoints, best/.
    assert {"model.safetensors", "README.md", "metrics.json", "checkpoint-2/optimizer.pt"} <= names
    assert "best/model.safetensors" in names and any(n.startswith("runs/") for n in names)
    for path in files:
        content = path.read_bytes()
        assert TOKEN.encode() not in content, path
        assert TOKEN.encode("utf-16-le") not in content, path
    assert TOKEN not in result.stdout and TOKEN not in result.stderr

    # Weights only as safetensors; the .pt state files hold plain tensors/containers (weights_only loads).
    assert not [n for n in names if n.endswith((".bin", ".pkl", ".pickle", ".ckpt", ".pth"))]
    for path in out.rglob("*.pt"):
        torch.load(path, weights_only=True)
