"""``supclap-push`` (``python -m modeling_supclap.cli.push``): push a training run's output folder to the Hub.

The model, processor, code and model card of the folder ``train_supclap.py`` wrote (never its resumable
checkpoints or tracker logs); the card's code is pointed at the repository. A failure (network, login,
permissions) ends in one message that says what to do and how to push again::

    supclap-push --output_dir outputs/supclap-demo --hub_model_id me/supclap-demo [--hub_private_repo]
        [--hub_space_id me/supclap-demo-app]   # and a Space serving it with the demo app (supclap-app)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..hub import push_output_folder
from .errors import run
from .parsing import parse_arguments


@dataclass(kw_only=True)
class PushArguments:
    output_dir: str = field(
        metadata={"help": "The output folder of a training run (model, processor, card)."}
    )
    hub_model_id: str = field(
        metadata={"help": "The repository to push to, e.g. me/supclap-demo.", "aliases": ["--repo_id"]}
    )
    hub_space_id: str | None = field(
        default=None,
        metadata={
            "help": "Also push a Gradio Space serving the model with the demo app (supclap-app) to this id, "
            "e.g. me/supclap-demo-app, and link it from the model card."
        },
    )
    hub_private_repo: bool = field(
        default=False,
        metadata={"help": "Create the repository (and the Space) as private.", "aliases": ["--private"]},
    )


def main(argv: Sequence[str] | None = None) -> str:
    """Errors end in one message and an exit status (``cli/errors.py``)."""
    return run("supclap-push", _push, argv)


def _push(argv: Sequence[str]) -> str:
    (args,) = parse_arguments((PushArguments,), argv, description=__doc__.splitlines()[0])

    repo = push_output_folder(
        args.output_dir, args.hub_model_id, private=args.hub_private_repo, space_id=args.hub_space_id
    )
    print(
        f"pushed {args.output_dir} to {repo}"
        + (f" and its demo app to the Space {args.hub_space_id}" if args.hub_space_id else "")
    )
    return repo


if __name__ == "__main__":
    main()
