"""The Python examples of docs/INTEGRATIONS.md run as written (on a small corpus and a tiny model)."""

from __future__ import annotations

import re

import pytest
from helpers.cli import REPO, SMALL_CORPUS_CLIPS, run_in_process, run_script, tiny_train_args

from modeling_supclap.cli.train import main as train_main

DOC = REPO / "docs" / "INTEGRATIONS.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.fixture(scope="module")
def workspace(small_corpus_cache, tmp_path_factory):
    """A folder laid out like the repo after `python train_supclap.py` (small corpus, tiny model)."""
    root = tmp_path_factory.mktemp("docs_workspace")
    (root / ".cache" / "supclap").mkdir(parents=True)
    (root / ".cache" / "supclap" / "demo_corpus_2400").symlink_to(
        small_corpus_cache / f"demo_corpus_{SMALL_CORPUS_CLIPS}"
    )
    demo = root / "outputs" / "supclap-demo"
    result = run_in_process(train_main, tiny_train_args(small_corpus_cache, demo))
    assert result.returncode == 0, result.stderr[-3000:]
    return root


@pytest.mark.slow
@pytest.mark.parametrize("index", range(3), ids=["trainer", "lora", "pipeline"])
def test_integration_example_runs(workspace, index):
    blocks = _python_blocks()
    assert len(blocks) == 3
    script = workspace / f"example_{index}.py"
    script.write_text(blocks[index])
    result = run_script([str(script)], cwd=workspace)
    assert result.returncode == 0, result.stderr[-3000:]
    if index == 0:
        assert (
            "eval_t2a_R@1" in result.stdout
            and (workspace / "outputs" / "trainer-demo" / "model.safetensors").exists()
        )
    if index == 2:
        assert "'score'" in result.stdout
