"""Model cards and pushing a trained model to the Hugging Face Hub.

The card is rendered from the top-level ``model_card.md`` template (shipped in the package as
``templates/model_card.md``) with ``huggingface_hub.ModelCard.from_template``, so its metadata
(including ``model-index`` evaluation results) follows the Hub's schema.

Tokens come from where ``huggingface_hub`` looks (``HF_TOKEN``, ``huggingface-cli login``) or an
explicit ``token=``; they are never printed or written into any file.

Standalone push of an existing output folder: ``supclap-push`` (``cli/push.py``).
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData

from .evaluation.metrics import RETRIEVAL_METRICS
from .model.losses import SupClapLoss, SupClapLossSettings
from .space import write_space_files

if TYPE_CHECKING:
    from .model.configuration_supclap import SupClapConfig

TEMPLATE_PATH = Path(__file__).resolve().parent / "templates" / "model_card.md"
# What never goes to the Hub from an output folder: resumable checkpoints, the best-on-validation
# copy (already the final weights), tracker logs.
PUSH_IGNORE_PATTERNS = [
    "checkpoint-*",
    "checkpoint-*/**",
    "best/**",
    "runs/**",
    "*.tmp",
    "**/*.tmp/**",
    ".lock",  # the run's output-folder lock and heartbeats (training/resilience.py)
    ".heartbeat/**",
    ".supclap_app_training.json",  # the app's record of its demo training (app/assets.py: TRAINING_RECORD)
]
_SECRET_KEYS = ("token", "hub_token", "password", "secret")
# Written by supclap-convert next to a converted model (modeling_supclap/convert/report.py: REPORT_FILE).
CONVERSION_REPORT_FILE = "conversion_report.json"
# Run arguments that are paths of the machine that trained: a card never carries them (a push publishes it).
_LOCAL_PATH_ARGUMENTS = ("output_dir", "resume_from_checkpoint", "cache_dir")
# Where the card's code names the model it loads (templates/model_card.md): `pipeline(..., model="...")` and
# `Auto*.from_pretrained("...")`. A push points each at the repository, whatever the card named before.
# The card's model references: pipeline(model="..."), .from_pretrained("..."), supclap-app's flag ("Try it").
_CARD_MODEL_REFERENCE = re.compile(r'(\bmodel=|\.from_pretrained\(|--model_name_or_path )"[^"\n]*"')


def public_name(location: str | None) -> str | None:
    """How a card names a corpus or a model: a Hub id as it is, a local folder or file by its name only
    (``/home/me/sounds/my_corpus`` -> ``my_corpus``), so a pushed card holds no local path."""
    if not location:
        return location
    path = Path(location).expanduser()
    if path.exists() or path.is_absolute() or str(location).startswith((".", "~")) or len(path.parts) > 2:
        return path.name
    return str(location)


def _is_absolute_local_path(text: str) -> bool:
    """An absolute or home-relative path of this machine (never a Hub id, which has no leading / or ~)."""
    return text.startswith("~") or Path(text).is_absolute()


def local_folder_reference(folder: str | Path) -> str:
    """How the card of a model not on the Hub (yet) names its folder in its code: by the folder's name, a
    relative path that runs from the folder's parent. Never an absolute path: it would publish the
    machine's directory layout when the folder is pushed, and be wrong once the folder moves;
    :func:`push_output_folder` points the code at the repository."""
    return Path(folder).expanduser().resolve().name


def _without_local_paths(value: Any) -> Any:
    """A training argument for the card: an absolute or home-relative path by its last component (a new
    path argument must not leak the machine's layout), a list or tuple element by element."""
    if isinstance(value, (list, tuple)):
        return type(value)(_without_local_paths(item) for item in value)
    if isinstance(value, str) and _is_absolute_local_path(value):
        return Path(value).name
    return value


def point_card_at(card_text: str, repo_id: str) -> str:
    """The card with its code loading ``repo_id``: every ``model="..."``, ``.from_pretrained("...")`` and
    ``--model_name_or_path "..."`` of the template rewritten, whatever it named before (a local folder's
    name, or the absolute path that cards written before this version hold, possibly of a folder that has
    moved since)."""
    return _CARD_MODEL_REFERENCE.sub(lambda match: f'{match.group(1)}"{repo_id}"', card_text)


def conversion_source(folder: str | Path | None) -> dict[str, Any] | None:
    """The checkpoint a converted model folder came from (``source`` of its ``conversion_report.json``: file
    name, sha256, format), or ``None`` for a folder that was not converted (or a Hub id)."""
    if not folder:
        return None
    report = Path(folder) / CONVERSION_REPORT_FILE
    if not report.is_file():
        return None
    try:
        source = json.loads(report.read_text()).get("source")
    except (OSError, ValueError, AttributeError):
        return None
    return dict(source) if isinstance(source, dict) else None


def _source_text(source: Mapping[str, Any]) -> str:
    """``the LAION-CLAP checkpoint `x.pt` (sha256 `...`)``: by file name only, never a local path."""
    kind = {"laion_clap": "LAION-CLAP"}.get(str(source.get("format")), str(source.get("format", "a")))
    name = Path(str(source.get("file", "unknown"))).name
    return f"the {kind} checkpoint `{name}` (sha256 `{source.get('sha256', 'unknown')}`)"


def loss_summary(config) -> str:
    """The loss in words ("symmetric InfoNCE plus bilateral DynamicSVR (...)"), from the registry."""
    return SupClapLoss.settings_only(config).describe()


def architecture(config) -> str:
    """The model in words for a card: "a CLAP model (HTSAT audio tower, RoBERTa-style text tower)", or the
    dual encoder's two tower families."""
    if config.model_type == "supclap_dual_encoder":
        return (
            f"a dual encoder ({config.audio_config.model_type} audio tower, {config.text_config.model_type} "
            "text tower)"
        )
    return "a CLAP model (HTSAT audio tower, RoBERTa-style text tower)"


def loss_config_dict(config) -> dict[str, Any]:
    """The loss settings in use, for people (the card's table, logs): the loss's own ``get_config_dict``
    (only the fields its base loss and radius mode read), plus the logit-scale and batch settings."""
    return {
        **SupClapLoss.settings_only(config).get_config_dict(),
        "logit_scale_max": config.logit_scale_max,
        "freeze_logit_scale": config.freeze_logit_scale,
        "gradient_cache_chunk_size": config.gradient_cache_chunk_size,
    }


def loss_settings_table() -> str:
    """Every loss setting as a markdown table (field, default, meaning), from ``SupClapLossSettings``: the
    one definition the configs, the flags and docs/USAGE.md share."""
    rows = ["| field | default | meaning |", "| --- | --- | --- |"]
    for setting in SupClapLossSettings.loss_fields():
        default = "[64, 64]" if setting.name == "predictor_hidden_sizes" else repr(setting.default)
        rows.append(f"| `{setting.name}` | `{default}` | {setting.metadata['help']} |")
    return "\n".join(rows)


_RETRIEVAL_TASK = ("audio-text-retrieval", "Audio-text retrieval")
_ZERO_SHOT_TASK = ("zero-shot-audio-classification", "Zero-shot audio classification")


def _result(
    task: tuple[str, str], dataset: str, metric: str, value: float, name: str, config: str | None = None
) -> EvalResult:
    """One ``model-index`` entry of the test split (``config``: the caption or prompt language)."""
    return EvalResult(
        task_type=task[0],
        task_name=task[1],
        dataset_type=dataset.split(" (")[0],
        dataset_name=dataset,
        dataset_config=config,
        dataset_split="test",
        metric_type=metric,
        metric_value=round(float(value), 4),
        metric_name=name,
    )


def eval_results(results: Mapping[str, Any] | None, dataset_name: str) -> list[EvalResult]:
    """``model-index`` entries from :func:`~modeling_supclap.evaluation.evaluate_records` output: retrieval
    (pooled, then per caption language) and zero-shot accuracy (per prompt language, then pooled)."""
    if not results:
        return []
    entries = []
    retrieval = results.get("retrieval") or {}
    for key, name in RETRIEVAL_METRICS.items():
        if key in retrieval:
            metric = key.lower().replace("@", "_at_")
            entries.append(_result(_RETRIEVAL_TASK, dataset_name, metric, retrieval[key], name))
    for language, per_language in (results.get("retrieval_per_language") or {}).items():
        for key, name in RETRIEVAL_METRICS.items():
            if key in per_language:
                metric = key.lower().replace("@", "_at_") + f"_{language}"
                dataset = f"{dataset_name} ({language} captions)"
                entries.append(
                    _result(
                        _RETRIEVAL_TASK, dataset, metric, per_language[key], f"{name} ({language})", language
                    )
                )
    zero_shot = results.get("zero_shot")
    for language, per_language in ((zero_shot or {}).get("per_language") or {}).items():
        if per_language:
            dataset, name = f"{dataset_name} ({language} prompt)", f"Top-1 accuracy ({language} prompt)"
            entries.append(
                _result(
                    _ZERO_SHOT_TASK, dataset, f"accuracy_{language}", per_language["accuracy"], name, language
                )
            )
    if zero_shot:
        entries.append(
            _result(_ZERO_SHOT_TASK, dataset_name, "accuracy", zero_shot["accuracy"], "Top-1 accuracy")
        )
    return entries


def _table(rows: Mapping[str, Any]) -> str:
    lines = []
    for key, value in rows.items():
        if any(secret in key.lower() for secret in _SECRET_KEYS):
            continue  # never write a token into the card
        lines.append(f"| `{key}` | {value!s} |".replace("\n", " "))
    return "\n".join(lines)


def _results_text(results: Mapping[str, Any] | None) -> str:
    if not results:
        return "No evaluation results were recorded."
    from .evaluation.report import format_results

    return "Test split:\n\n```\n" + format_results(dict(results)) + "\n```"


def demo_text(repo_id: str, space_url: str | None = None) -> str:
    """The card's "Try it" paragraph: the demo Space when there is one, and the local command."""
    local = (
        f'`supclap-app --model_name_or_path "{repo_id}"` (the `supclap` package with its `app` extra) opens '
        "a page in your browser: search sounds by text, classify a clip zero-shot, find similar sounds."
    )
    if space_url is None:
        return local
    return f"In your browser: [the demo Space]({space_url}). Locally: {local}"


_TRY_IT = re.compile(r"(## Try it\n\n)(.*?)(\n\n## )", re.S)


def with_demo_link(card_text: str, repo_id: str, space_url: str) -> str:
    """``card_text`` with its "Try it" paragraph pointing at the Space (a card written before that section
    existed gets it before "## Use")."""
    paragraph = demo_text(repo_id, space_url)
    if _TRY_IT.search(card_text):
        return _TRY_IT.sub(lambda match: match.group(1) + paragraph + match.group(3), card_text, count=1)
    return card_text.replace("\n## Use\n", f"\n## Try it\n\n{paragraph}\n\n## Use\n", 1)


def render_model_card(
    config: SupClapConfig,
    train_args: Mapping[str, Any] | None = None,
    data_description: str = "unspecified",
    results: Mapping[str, Any] | None = None,
    base_model: str | None = None,
    repo_id: str | None = None,
    model_name: str | None = None,
    sampling_rate: int = 48000,
    source_checkpoint: Mapping[str, Any] | None = None,
    tower_models: Mapping[str, str | None] | None = None,
) -> ModelCard:
    """A ``ModelCard`` from the template: base model, loss settings, data, arguments, results.

    It holds no absolute local path: a local ``repo_id``, ``base_model``, corpus or source checkpoint is
    named by its last component, and so is a path among ``train_args`` (the folders of the run are left out).

    ``source_checkpoint``: the checkpoint the model (or, with ``base_model``, its base) was converted from
    (:func:`conversion_source`): the card names it by file name and sha256. ``tower_models``: the checkpoints
    a new model's towers started from (``{"audio": ..., "text": ...}``; ``None`` for a random tower).

    The loss is described by the loss itself (``SupClapLoss.describe`` and ``get_config_dict``, as
    sentence-transformers' cards do), so a newly registered base loss or radius mode needs no edit here.
    """
    if repo_id and _is_absolute_local_path(repo_id):
        repo_id = local_folder_reference(repo_id)
    model_name = model_name or (repo_id.split("/")[-1] if repo_id else "supclap-model")
    data_description = public_name(data_description) or "unspecified"
    base_model_name = public_name(base_model)
    towers = {kind: path for kind, path in (tower_models or {}).items() if path}
    hub_ids = [
        path for path in ([base_model] if base_model else towers.values()) if public_name(path) == path
    ]
    card_data = ModelCardData(
        model_name=model_name,
        library_name="transformers",
        pipeline_tag="zero-shot-audio-classification",
        license="apache-2.0",
        tags=[
            "supclap",
            "clap",
            "audio-text-retrieval",
            "contrastive-learning",
            "support-vector-regularization",
        ],
        base_model=(hub_ids[0] if len(hub_ids) == 1 else hub_ids) or None,  # only Hub ids
        eval_results=eval_results(results, data_description) or None,
    )
    summary = loss_summary(config)
    origin_text = f"trained with {summary}, with the open SupCLAP toolkit."
    if base_model:
        base_text = f"Fine-tuned from `{base_model_name}`."
        if source_checkpoint:
            base_text = base_text[:-1] + f", itself converted from {_source_text(source_checkpoint)}."
    elif source_checkpoint:
        base_text = (
            f"Converted from {_source_text(source_checkpoint)} by `supclap-convert`, tensor for tensor, "
            "with a processor that reproduces LAION-CLAP's own preprocessing (see the `supclap` package's "
            "docs/CONVERSION.md and this folder's `conversion_report.json`). Not trained further."
        )
        origin_text = (
            "converted from a LAION-CLAP checkpoint with the open SupCLAP toolkit; training it further "
            f"uses {summary}."
        )
    elif towers:
        named = " and ".join(f"`{public_name(path)}` ({kind})" for kind, path in towers.items())
        rest = "the other tower, " if len(towers) == 1 else ""
        base_text = (
            f"Towers initialised from {named}; {rest}the projections and the loss trained from scratch."
        )
    else:
        base_text = "Trained from scratch (random initialisation)."
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE_PATH),
        model_name=model_name,
        repo_id=repo_id or "path/to/this/folder",
        architecture=architecture(config),
        origin_text=origin_text,
        base_model_text=base_text,
        data_description=data_description,
        loss_table=_table(loss_config_dict(config)),
        training_table=_table(
            {
                key: _without_local_paths(value)
                for key, value in (train_args or {}).items()
                if key not in _LOCAL_PATH_ARGUMENTS
            }
        )
        or "| - | - |",
        results_text=_results_text(results),
        sampling_rate=sampling_rate,
        demo_text=demo_text(repo_id or "path/to/this/folder"),
    )


def write_model_card(output_dir: str | Path, config, **kwargs: Any) -> Path:
    """Render the card into ``output_dir/README.md``."""
    card = render_model_card(config, **kwargs)
    path = Path(output_dir) / "README.md"
    card.save(path)
    return path


def push_output_folder(
    folder: str | Path,
    repo_id: str | None,
    private: bool = False,
    token: str | None = None,
    commit_message: str = "Upload SupCLAP model",
    space_id: str | None = None,
) -> str:
    """Create (if needed) ``repo_id`` and upload the model, processor, code and card of ``folder``.

    Returns the repository id. The folder must hold what ``train_supclap.py`` saves. ``space_id``: also push
    a Gradio Space serving the model with the demo app (``space.py``; as private as the model) and link it
    from the model card.
    """
    folder = Path(folder)
    if not repo_id:
        raise ValueError("pushing needs a repository id (--hub_model_id), e.g. 'me/supclap-demo'")
    for required in ("config.json", "model.safetensors"):
        if not (folder / required).exists():
            raise FileNotFoundError(f"{folder} has no {required}: is it the output folder of a training run?")
    card = folder / "README.md"
    if not card.exists():
        _write_card_from_folder(folder, repo_id)
    else:  # a card written before the push loads the local folder in its code: point it at the repo
        card.write_text(point_card_at(card.read_text(), repo_id))
    api = HfApi(token=token)
    if space_id:
        card.write_text(with_demo_link(card.read_text(), repo_id, f"{api.endpoint}/spaces/{space_id}"))
    try:
        repo_url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        api.upload_folder(
            folder_path=str(folder),
            repo_id=repo_url.repo_id,
            commit_message=commit_message,
            ignore_patterns=PUSH_IGNORE_PATTERNS,
        )
        if space_id:
            _push_space(api, space_id, repo_url.repo_id, private)
    # Any failure of the Hub client (HTTP status, network, offline mode: their types differ between
    # huggingface_hub versions) says what to do; the local folder is complete either way.
    except Exception as error:
        raise HubPushError(_push_failure(error, folder, repo_id, api.endpoint, space_id)) from error
    return repo_url.repo_id


def _push_space(api: HfApi, space_id: str, model_repo_id: str, private: bool) -> None:
    """Create (if needed) the Gradio Space ``space_id`` and upload the demo app's files serving the model."""
    with tempfile.TemporaryDirectory(prefix="supclap_space_") as staging:
        write_space_files(staging, model_repo_id, space_id)
        api.create_repo(space_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
        api.upload_folder(
            folder_path=staging,
            repo_id=space_id,
            repo_type="space",
            commit_message=f"The SupCLAP demo app serving {model_repo_id}",
        )


class HubPushError(OSError):
    """Pushing an output folder to the Hub failed (network, login, permissions); the folder is intact."""


def _push_failure(
    error: Exception, folder: Path, repo_id: str, endpoint: str, space_id: str | None = None
) -> str:
    status = getattr(getattr(error, "response", None), "status_code", None)
    if status == 401:
        advice = "Log in first: set HF_TOKEN or run `hf auth login`."
    elif status == 403:
        advice = f"The token cannot write to '{repo_id}': use a write token, or a repository you own."
    elif status is None:
        advice = f"Could not reach {endpoint}: check the network (and HF_ENDPOINT, HF_HUB_OFFLINE)."
    else:
        advice = f"The Hub answered {status}."
    first_line = (str(error).strip().splitlines() or [""])[0]
    again = f"supclap-push --output_dir {folder} --hub_model_id {repo_id}"
    if space_id:
        again += f" --hub_space_id {space_id}"
    return (
        f"pushing {folder} to '{repo_id}' failed ({type(error).__name__}: {first_line}). {advice} The "
        f"folder is complete; push it again with: {again}"
    )


def _write_card_from_folder(folder: Path, repo_id: str) -> None:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
    metrics_path = folder / "metrics.json"
    results = json.loads(metrics_path.read_text()).get("test") if metrics_path.exists() else None
    try:
        from transformers import AutoFeatureExtractor

        rate = int(AutoFeatureExtractor.from_pretrained(folder).sampling_rate)
    except (OSError, ValueError, AttributeError):  # no processor in the folder
        rate = 48000
    write_model_card(
        folder,
        config,
        results=results,
        repo_id=repo_id,
        sampling_rate=rate,
        source_checkpoint=conversion_source(folder),
    )
