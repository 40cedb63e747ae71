"""Models: timm feature backbones, an encoder-decoder-head base with a registry, CAM classifier, DeepLabv3+,
PseudoSeg's network, MaskFormer and SimFormer's network.

Example:
    >>> from lesseg.models import create_model, list_models
    >>> list_models()
    ['cam_classifier', 'deeplabv3plus', 'maskformer', 'mcis', 'picie_fpn', 'pseudoseg', 'simformer']
    >>> model = create_model("cam_classifier", backbone="resnet18", num_classes=20)
"""

from lesseg.models.backbones import DILATED_FAMILIES, OUTPUT_STRIDES, Backbone, create_backbone
from lesseg.models.base import SegmentationModel, create_model, list_models, register_model
from lesseg.models.cam import CAMClassifier, multilabel_soft_margin_loss
from lesseg.models.coattention import CoAttention, MCISNet
from lesseg.models.deeplab import DeepLabV3Plus
from lesseg.models.fpn import PiCIEFPN
from lesseg.models.maskformer import MaskFormer
from lesseg.models.pseudoseg import PseudoSegNet
from lesseg.models.simformer import SimFormerNet, SimNet

__all__ = [
    "DILATED_FAMILIES",
    "OUTPUT_STRIDES",
    "Backbone",
    "CAMClassifier",
    "CoAttention",
    "MCISNet",
    "MaskFormer",
    "DeepLabV3Plus",
    "PiCIEFPN",
    "PseudoSegNet",
    "SegmentationModel",
    "SimFormerNet",
    "SimNet",
    "create_backbone",
    "create_model",
    "list_models",
    "multilabel_soft_margin_loss",
    "register_model",
]
