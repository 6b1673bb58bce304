"""The dual encoder through the real command lines: train from two pretrained towers or two random ones,
reload with AutoModel and with trust_remote_code where the package is absent, evaluate, the zero-shot
pipeline, and one clear message (exit status 2) for each tower the run cannot use."""

from __future__ import annotations

import json
import shutil
import textwrap

import numpy as np
import pytest
import torch
from helpers.cli import BLOCK_PACKAGE_IMPORT, SMALL_CORPUS_CLIPS, run_in_process, run_script, tiny_train_args
from transformers import AutoModel, AutoProcessor, pipeline

from modeling_supclap import SupClapDualEncoderModel
from modeling_supclap.cli.evaluate import main as evaluate_main
from modeling_supclap.cli.train import main as train_main

pytestmark = pytest.mark.slow

# Each audio tower the issue names with two text towers.
RUNS = [("ast", "bert"), ("ast", "xlm-roberta"), ("whisper", "bert"), ("whisper", "modernbert"),
        ("wav2vec2", "xlm-roberta"), ("wav2vec2", "modernbert")]  # fmt: skip
CLIP = 0.1 * np.random.default_rng(3).standard_normal(16000).astype(np.float32)
CAPTIONS = ["two short high beeps", "a loud knock"]

REMOTE = BLOCK_PACKAGE_IMPORT + textwrap.dedent(
    """
    import json, sys
    import numpy as np, torch
    from transformers import AutoModel, AutoProcessor
    clip = np.load(sys.argv[2])
    out = {}
    for folder in json.loads(sys.argv[1]):
        model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
        processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
        inputs = processor(text=["two short high beeps", "a loud knock"], audio=[clip], sampling_rate=16000)
        with torch.no_grad():
            result = model(**inputs)
        out[folder] = {"module": type(model).__module__, "audio": result.audio_embeds.tolist(),
                       "text": result.text_embeds.tolist()}
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def trained(tower_checkpoints, small_corpus_cache, tmp_path_factory) -> dict:
    """Two steps of train_supclap.py's main from each pair of pretrained towers (in this process: the folders
    are what the tests check; the reload without the package below is a process of its own): the folders."""
    root, folders = tmp_path_factory.mktemp("dual_runs"), {}
    for audio, text in RUNS:
        out = root / f"{audio}-{text}"
        args = tiny_train_args(
            small_corpus_cache, out, "--max_steps", "2", "--eval_steps", "2", "--save_steps", "0"
        )
        args += ["--audio_model_name_or_path", str(tower_checkpoints[audio])]
        args += ["--text_model_name_or_path", str(tower_checkpoints[text]), "--svr_mode", "dynamic"]
        result = run_in_process(train_main, args)
        assert result.returncode == 0, f"{audio}+{text}: {result.stderr[-4000:]}"
        assert f"audio tower from {tower_checkpoints[audio]}" in result.stderr
        folders[(audio, text)] = out
    return folders


def _embeddings(folder) -> tuple[torch.Tensor, torch.Tensor]:
    model, info = AutoModel.from_pretrained(folder, output_loading_info=True)
    assert type(model) is SupClapDualEncoderModel
    assert not (info["missing_keys"] or info["unexpected_keys"] or info["mismatched_keys"]), info
    inputs = AutoProcessor.from_pretrained(folder)(text=CAPTIONS, audio=[CLIP], sampling_rate=16000)
    with torch.no_grad():
        out = model.eval()(**inputs)
    return out.audio_embeds, out.text_embeds


def test_trained_dual_encoders_reload_the_same_with_and_without_the_package(trained, tmp_path):
    local = {str(folder): _embeddings(folder) for folder in trained.values()}
    for (audio, text), folder in trained.items():
        config = json.loads((folder / "config.json").read_text())
        assert config["model_type"] == "supclap_dual_encoder" and config["svr_mode"] == "dynamic"
        assert (folder / "processing_supclap_dual_encoder.py").is_file(), f"{audio}+{text}"
    np.save(tmp_path / "clip.npy", CLIP)
    result = run_script(
        ["-c", REMOTE, json.dumps(list(local)), str(tmp_path / "clip.npy")],
        cwd=tmp_path,
        env={"PYTHONPATH": ""},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    remote = json.loads(result.stdout.strip().splitlines()[-1])
    for folder, (audio, text) in local.items():
        assert remote[folder]["module"].startswith("transformers_modules")
        torch.testing.assert_close(torch.tensor(remote[folder]["audio"]), audio, atol=1e-6, rtol=0)
        torch.testing.assert_close(torch.tensor(remote[folder]["text"]), text, atol=1e-6, rtol=0)


def test_eval_and_the_zero_shot_pipeline_work_on_a_saved_dual_encoder(trained, small_corpus_cache, tmp_path):
    folder = trained[("whisper", "bert")]
    corpus = small_corpus_cache / f"demo_corpus_{SMALL_CORPUS_CLIPS}"
    report = tmp_path / "eval.json"
    result = run_in_process(
        evaluate_main,
        ["--model_name_or_path", str(folder), "--eval_data", str(corpus),
         "--eval_split", "test", "--output_json", str(report), "--dataloader_num_workers", "0"],
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    results = json.loads(report.read_text())
    assert (
        results["num_clips"] == 8
        and "t2a_R@1" in results["retrieval"]
        and results["zero_shot"]["accuracy"] >= 0
    )
    classifier = pipeline("zero-shot-audio-classification", model=str(folder))
    scores = classifier(CLIP, candidate_labels=CAPTIONS, hypothesis_template="{}")
    model = AutoModel.from_pretrained(folder).eval()
    inputs = AutoProcessor.from_pretrained(folder)(text=CAPTIONS, audio=[CLIP], sampling_rate=16000)
    with torch.no_grad():
        probabilities = model(**inputs).logits_per_audio.softmax(-1)[0]
    for entry in scores:
        expected = float(probabilities[CAPTIONS.index(entry["label"])])
        assert entry["score"] == pytest.approx(expected, abs=1e-4), (entry, probabilities)


def test_random_towers_of_each_family_train_from_scratch(small_corpus_cache, tmp_path):
    for audio, text in (("wavlm", "t5"), ("htsat", "modernbert"), ("hubert", "m2m100")):
        out = tmp_path / f"{audio}-{text}"
        args = tiny_train_args(
            small_corpus_cache, out, "--max_steps", "2", "--eval_steps", "2", "--save_steps", "0"
        )
        result = run_in_process(train_main, [*args, "--audio_tower", audio, "--text_tower", text])
        assert result.returncode == 0, f"{audio}+{text}: {result.stderr[-4000:]}"
        assert (
            f"a new tiny {audio} audio tower" in result.stderr
            and f"a new tiny {text} text tower" in result.stderr
        )
        assert _embeddings(out)[0].shape == (1, 16)


NO_HIDDEN_STATES = {
    "configuration_pooled_only.py": """
        from transformers import PreTrainedConfig

        class PooledOnlyConfig(PreTrainedConfig):
            model_type = "pooled_only"

            def __init__(self, width=8, **kwargs):
                super().__init__(**kwargs)
                self.width = self.hidden_size = width
    """,
    "modeling_pooled_only.py": """
        import torch
        from transformers import PreTrainedModel
        from transformers.modeling_outputs import SequenceClassifierOutput

        from .configuration_pooled_only import PooledOnlyConfig

        class PooledOnlyModel(PreTrainedModel):
            '''An audio classifier: one vector per clip, no hidden states to pool.'''
            config_class = PooledOnlyConfig
            main_input_name = "input_values"

            def __init__(self, config):
                super().__init__(config)
                self.linear = torch.nn.Linear(16, config.width)
                self.post_init()

            def forward(self, input_values, **kwargs):
                return SequenceClassifierOutput(logits=self.linear(input_values.mean(1)))
    """,
}


def _pooled_only_tower(tower_checkpoints, folder):
    """A remote-code audio tower (auto_map) whose output has no last_hidden_state, with AST's extractor."""
    from transformers import AutoConfig

    folder.mkdir()
    shutil.copy(tower_checkpoints["ast"] / "preprocessor_config.json", folder)
    for name, code in NO_HIDDEN_STATES.items():
        (folder / name).write_text(textwrap.dedent(code))
    (folder / "config.json").write_text(json.dumps({
        "model_type": "pooled_only", "width": 8,
        "auto_map": {"AutoConfig": "configuration_pooled_only.PooledOnlyConfig",
                     "AutoModel": "modeling_pooled_only.PooledOnlyModel"},
    }))  # fmt: skip
    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    AutoModel.from_config(config, trust_remote_code=True).save_pretrained(folder)
    return folder


def test_each_tower_the_run_cannot_use_is_one_message_and_exit_2(
    tower_checkpoints, small_corpus_cache, tmp_path
):
    slow_rate = shutil.copytree(tower_checkpoints["ast"], tmp_path / "ast_at_100_hz")
    config = json.loads((slow_rate / "preprocessor_config.json").read_text())
    (slow_rate / "preprocessor_config.json").write_text(json.dumps({**config, "sampling_rate": 100}))
    pooled_only = _pooled_only_tower(tower_checkpoints, tmp_path / "pooled_only")
    cases = [
        (["--audio_model_name_or_path", str(tower_checkpoints["bert"]), "--text_tower", "bert"],
         "is a text model (BertModel, input 'input_ids'), not an audio encoder: give it as "
         "--text_model_name_or_path"),
        (["--text_model_name_or_path", str(tower_checkpoints["ast"]), "--audio_tower", "ast"],
         "is an audio model (ASTModel, input 'input_values'), not a text encoder: give it as "
         "--audio_model_name_or_path"),
        (["--audio_model_name_or_path", str(slow_rate), "--text_tower", "bert"],
         "expects audio at 100 Hz, which the corpus cannot be resampled to"),
        (["--audio_model_name_or_path", str(pooled_only), "--text_tower", "bert", "--trust_remote_code"],
         "returns no last_hidden_state"),
    ]  # fmt: skip
    for extra, message in cases:
        args = tiny_train_args(small_corpus_cache, tmp_path / "never", "--max_steps", "1")
        result = run_in_process(train_main, [*args, *extra])
        assert result.returncode == 2, (extra, result.stderr[-3000:])
        assert message in result.stderr and "Traceback" not in result.stderr, (extra, result.stderr[-3000:])
        assert not (tmp_path / "never" / "model.safetensors").exists()
