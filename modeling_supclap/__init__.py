"""SupCLAP: audio-text contrastive training with Support Vector Regularization.

Importing the package registers ``SupClapConfig``/``SupClapModel`` with transformers' Auto
classes (so ``AutoModel`` and ``pipeline("zero-shot-audio-classification")`` find them) and marks
them for ``register_for_auto_class`` (so ``save_pretrained`` writes ``auto_map`` and copies the
code, and a saved folder loads with ``trust_remote_code=True`` where this package is absent).
"""

from transformers import AutoConfig, AutoModel

from .model.configuration_supclap import SupClapConfig
from .model.losses import (
    InfoNCELoss,
    RadiusPredictor,
    SigLIPLoss,
    StaticRadius,
    SupClapLoss,
    gather_features,
    radius_constraint,
    support_vectors,
)
from .model.modeling_supclap import SupClapModel, SupClapOutput

AutoConfig.register(SupClapConfig.model_type, SupClapConfig, exist_ok=True)
AutoModel.register(SupClapConfig, SupClapModel, exist_ok=True)
SupClapConfig.register_for_auto_class()
SupClapModel.register_for_auto_class("AutoModel")

__version__ = "0.1.0"

__all__ = [
    "InfoNCELoss",
    "RadiusPredictor",
    "SigLIPLoss",
    "StaticRadius",
    "SupClapConfig",
    "SupClapLoss",
    "SupClapModel",
    "SupClapOutput",
    "gather_features",
    "radius_constraint",
    "support_vectors",
]
