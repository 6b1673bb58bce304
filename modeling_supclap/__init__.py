"""SupCLAP: audio-text contrastive training with Support Vector Regularization.

Two model families share the loss: ``SupClapModel`` (a ``ClapModel``: CLAP's HTSAT and RoBERTa-shaped
towers) and ``SupClapDualEncoderModel`` (any audio encoder with any text encoder). Importing the package
registers both with transformers' Auto classes (so ``AutoModel``, ``AutoProcessor`` and
``pipeline("zero-shot-audio-classification")`` find them) and marks them for ``register_for_auto_class``
(so ``save_pretrained`` writes ``auto_map`` and copies the code, and a saved folder loads with
``trust_remote_code=True`` where this package is absent). The same for ``LaionClapFeatureExtractor``
(LAION-CLAP's exact preprocessing, used by converted models) with ``AutoFeatureExtractor``.
"""

from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoProcessor

from .model.configuration_supclap import SupClapConfig
from .model.configuration_supclap_dual_encoder import SupClapDualEncoderConfig
from .model.contrastive_head import SupClapOutput
from .model.feature_extraction_laion_clap import LaionClapFeatureExtractor
from .model.losses import (
    InfoNCELoss,
    RadiusPredictor,
    SigLIPLoss,
    StaticRadius,
    SupClapLoss,
    SupClapLossSettings,
    gather_features,
    radius_constraint,
    support_vectors,
)
from .model.modeling_supclap import SupClapModel
from .model.modeling_supclap_dual_encoder import SupClapDualEncoderModel
from .model.processing_supclap_dual_encoder import SupClapDualEncoderProcessor

for _config, _model in ((SupClapConfig, SupClapModel), (SupClapDualEncoderConfig, SupClapDualEncoderModel)):
    AutoConfig.register(_config.model_type, _config, exist_ok=True)
    AutoModel.register(_config, _model, exist_ok=True)
    _config.register_for_auto_class()
    _model.register_for_auto_class("AutoModel")
AutoProcessor.register(SupClapDualEncoderConfig, SupClapDualEncoderProcessor, exist_ok=True)
SupClapDualEncoderProcessor.register_for_auto_class("AutoProcessor")
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
    "SupClapDualEncoderConfig",
    "SupClapDualEncoderModel",
    "SupClapDualEncoderProcessor",
    "SupClapLoss",
    "SupClapLossSettings",
    "SupClapModel",
    "SupClapOutput",
    "gather_features",
    "radius_constraint",
    "support_vectors",
]
