"""The multimodal detector (torch): configuration, building blocks, the model itself.

config.py     ModelConfig and its presets (saved in every checkpoint)
frontend.py   log-mel front end, pixel normalisation, SpecAugment (layers of the model)
blocks.py     timm backbones, the mouth CNN, sync-path helpers
detector.py   Detector (raw audio + face crops -> logits) and its export wrapper
"""

from train.model.blocks import instant_weights, mismatch_steps
from train.model.config import MOUTH_BOX, TINY_RESNET_KWARGS, ModelConfig
from train.model.detector import Detector, ProbabilityModel, build_model

__all__ = [
    "MOUTH_BOX",
    "TINY_RESNET_KWARGS",
    "Detector",
    "ModelConfig",
    "ProbabilityModel",
    "build_model",
    "instant_weights",
    "mismatch_steps",
]
