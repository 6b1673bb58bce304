"""A dual encoder whose audio tower is remote code (as CED and Dasheng are on the Hub): its saved folder
carries the tower's code and reloads with ``trust_remote_code=True`` once the tower's own folder is gone,
through ``AutoModel`` without the package and ``SupClapDualEncoderModel`` with it, and through the command
lines; without the flag, one message says what to do.

The tower is written by the test (``configuration_frames.py``/``modeling_frames.py`` with ``auto_map``): a
Dasheng-shaped encoder whose forward returns a bare (batch, frames, width) tensor, fed by AST's extractor.
Registrations of remote classes are process-wide, so every load is checked in a fresh process.
"""

from __future__ import annotations

import json
import shutil
import textwrap

import numpy as np
import pytest
import torch
from helpers.cli import BLOCK_PACKAGE_IMPORT, SMALL_CORPUS_CLIPS, run_in_process, run_script, tiny_train_args
from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoTokenizer

from modeling_supclap import SupClapDualEncoderModel, SupClapDualEncoderProcessor
from modeling_supclap.cli.evaluate import main as evaluate_main

pytestmark = pytest.mark.slow

CAPTIONS = ["two short high beeps", "a loud knock"]
TOWER_CODE = {
    "configuration_frames.py": """
        from transformers import PreTrainedConfig

        class FrameEncoderConfig(PreTrainedConfig):
            model_type = "frame_encoder"

            def __init__(self, embed_dim=24, num_mel_bins=16, **kwargs):
                super().__init__(**kwargs)
                self.embed_dim, self.num_mel_bins = embed_dim, num_mel_bins
    """,
    "modeling_frames.py": """
        import torch
        from transformers import PreTrainedModel

        from .configuration_frames import FrameEncoderConfig

        class FrameEncoderModel(PreTrainedModel):
            '''One vector per log-mel frame, returned as a bare tensor (as Dasheng's forward does).'''
            config_class = FrameEncoderConfig
            main_input_name = "input_values"

            def __init__(self, config):
                super().__init__(config)
                self.frames = torch.nn.Linear(config.num_mel_bins, config.embed_dim)
                self.post_init()

            def forward(self, input_values, **kwargs):
                return torch.tanh(self.frames(input_values))
    """,
}
# Embeddings of the saved folder in a fresh process: package blocked (AutoModel) or imported (its class).
EMBED = """
import json, sys
import numpy as np, torch
from transformers import AutoModel, AutoProcessor
folder, clip = sys.argv[1], np.load(sys.argv[2])
{load}
processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
inputs = processor(text=json.loads(sys.argv[3]), audio=[clip], sampling_rate=16000)
with torch.no_grad():
    out = model.eval()(**inputs)
print(json.dumps({{"audio": out.audio_embeds.tolist(), "text": out.text_embeds.tolist(),
                  "tower": type(model.audio_model).__module__,
                  "info": {{k: list(v) for k, v in info.items()}}}}))
"""
WITHOUT_PACKAGE = BLOCK_PACKAGE_IMPORT + EMBED.format(
    load="model, info = AutoModel.from_pretrained(folder, trust_remote_code=True, output_loading_info=True)"
)
WITH_PACKAGE = EMBED.format(
    load=textwrap.dedent(
        """
        from modeling_supclap import SupClapDualEncoderModel
        for load in (AutoModel.from_pretrained, SupClapDualEncoderModel.from_pretrained):
            try:
                load(folder)
                raise SystemExit("loaded without trust_remote_code")
            except ValueError as error:
                assert "remote code saved with the model" in str(error), error
        model, info = SupClapDualEncoderModel.from_pretrained(
            folder, trust_remote_code=True, output_loading_info=True
        )
        AutoModel.from_pretrained(folder)  # its classes are registered now: the Auto classes find them
        """
    )
)


def remote_tower(folder, extractor_from):
    """A remote-code audio tower saved in ``folder``: weights, config with auto_map, code, AST's extractor."""
    folder.mkdir()
    for name, code in TOWER_CODE.items():
        (folder / name).write_text(textwrap.dedent(code))
    (folder / "config.json").write_text(json.dumps({
        "model_type": "frame_encoder", "embed_dim": 24, "num_mel_bins": 16,
        "auto_map": {"AutoConfig": "configuration_frames.FrameEncoderConfig",
                     "AutoModel": "modeling_frames.FrameEncoderModel"},
    }))  # fmt: skip
    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    AutoModel.from_config(config, trust_remote_code=True).save_pretrained(folder)
    shutil.copy(extractor_from / "preprocessor_config.json", folder)
    return folder


def _compare(result, audio, text) -> dict:
    assert result.returncode == 0, result.stderr[-4000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert not any(loaded["info"].values()), loaded["info"]  # no missing, unexpected or mismatched keys
    torch.testing.assert_close(torch.tensor(loaded["audio"]), audio, atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.tensor(loaded["text"]), text, atol=1e-6, rtol=0)
    return loaded


def test_a_saved_dual_encoder_carries_its_remote_tower_code_and_reloads_without_the_towers_folder(
    tower_checkpoints, tmp_path
):
    tower = remote_tower(tmp_path / "frames", tower_checkpoints["ast"])
    torch.manual_seed(0)
    model = SupClapDualEncoderModel.from_audio_text_pretrained(
        str(tower), str(tower_checkpoints["bert"]), trust_remote_code=True, projection_dim=16
    )
    processor = SupClapDualEncoderProcessor(
        AutoFeatureExtractor.from_pretrained(tower), AutoTokenizer.from_pretrained(tower_checkpoints["bert"])
    )
    saved = tmp_path / "saved"
    model.save_pretrained(saved)
    processor.save_pretrained(saved)
    shutil.rmtree(tower)  # the reload may only use what the saved folder holds
    config = json.loads((saved / "config.json").read_text())
    assert config["audio_config"]["auto_map"] == {
        "AutoConfig": "configuration_frames.FrameEncoderConfig",
        "AutoModel": "modeling_frames.FrameEncoderModel",
    }
    assert {"configuration_frames.py", "modeling_frames.py"} <= {p.name for p in saved.iterdir()}

    clip = 0.1 * np.random.default_rng(1).standard_normal(12000).astype(np.float32)
    np.save(tmp_path / "clip.npy", clip)
    with torch.no_grad():
        out = model.eval()(**processor(text=CAPTIONS, audio=[clip], sampling_rate=16000))
    args = [str(saved), str(tmp_path / "clip.npy"), json.dumps(CAPTIONS)]
    remote = run_script(["-c", WITHOUT_PACKAGE, *args], cwd=tmp_path, env={"PYTHONPATH": ""})
    assert _compare(remote, out.audio_embeds, out.text_embeds)["tower"].startswith("transformers_modules")
    _compare(run_script(["-c", WITH_PACKAGE, *args]), out.audio_embeds, out.text_embeds)


def test_the_command_lines_train_and_evaluate_with_a_remote_code_tower(
    tower_checkpoints, small_corpus_cache, tmp_path
):
    tower = remote_tower(tmp_path / "frames", tower_checkpoints["ast"])
    out = tmp_path / "run"
    steps = ("--max_steps", "2", "--eval_steps", "2", "--save_steps", "2")
    args = tiny_train_args(small_corpus_cache, out, *steps)
    args += ["--audio_model_name_or_path", str(tower)]
    args += ["--text_model_name_or_path", str(tower_checkpoints["bert"])]
    result = run_script(["train_supclap.py", *args, "--trust_remote_code"])
    assert result.returncode == 0, result.stderr[-4000:]
    for folder in (out, out / "checkpoint-2", out / "best"):
        assert (folder / "modeling_frames.py").is_file(), folder
    shutil.rmtree(tower)

    corpus = small_corpus_cache / f"demo_corpus_{SMALL_CORPUS_CLIPS}"
    evaluate = ["eval_supclap.py", "--model_name_or_path", str(out), "--eval_data", str(corpus)]
    result = run_script([*evaluate, "--output_json", str(tmp_path / "eval.json"), "--trust_remote_code"])
    assert result.returncode == 0, result.stderr[-4000:]
    assert "t2a_R@1" in json.loads((tmp_path / "eval.json").read_text())["retrieval"]
    refused = run_in_process(evaluate_main, evaluate[1:])  # refused before any remote code is imported
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr[-3000:]
    assert "is of type 'frame_encoder'" in refused.stderr and "trust_remote_code=True" in refused.stderr
