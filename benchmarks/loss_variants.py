"""The loss variants the benchmarks compare: name -> (base_loss, svr_mode, svr_bilateral).

Read from the loss registry (``modeling_supclap.model.losses.BASE_LOSSES`` and ``SVR_MODES``): every base
loss alone, and with every SVR mode on one side (``-uni``) and both (``-bi``). A newly registered
mode shows up here (and in ``--variants``) with no edit.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, when run as a script

from modeling_supclap.model.losses import BASE_LOSSES, SVR_MODES  # noqa: E402


def loss_variants() -> dict[str, tuple[str, str, bool]]:
    variants: dict[str, tuple[str, str, bool]] = {}
    for base in BASE_LOSSES:
        variants[base] = (base, "none", True)
        for mode in SVR_MODES:
            if mode != "none":
                for bilateral in (False, True):
                    variants[f"{base}+{mode}-{'bi' if bilateral else 'uni'}"] = (base, mode, bilateral)
    return variants


VARIANTS = loss_variants()
