"""SupCLAP: audio-text contrastive training with Support Vector Regularization.

Importing the package registers ``SupClapConfig``/``SupClapModel`` with transformers' Auto
classes (so ``AutoModel`` and ``pipeline("zero-shot-audio-classification")`` find them) and marks
them for ``register_for_auto_class`` (so ``save_pretrained`` writes ``auto_map`` and copies the
code, and a saved folder loads with ``trust_remote_code=True`` where this package is absent). The
same for ``LaionClapFeatureExtractor`` (LAION-CLAP's exact preprocessing, used by converted models)
with ``AutoFeatureExtractor``.
"""

from transformers import AutoConfig, AutoFeatureExtractor, AutoModel

from .model.configuration_supclap import SupClapConfig
from .model.feature_extraction_laion_clap import LaionClapFeatureExtractor
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
# Found by the name a preprocessor_config.json gives ("feature_extractor_type"); the config class is only
# the mapping's key (every SupClap folder's preprocessor config names its extractor class).
AutoFeatureExtractor.register(SupClapConfig, LaionClapFeatureExtractor, exist_ok=True)
LaionClapFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")

__version__ = "0.1.0"

__all__ = [
    "InfoNCELoss",
    "LaionClapFeatureExtractor",
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
