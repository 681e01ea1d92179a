"""Classifiers and their cached training, and a real ImageNet classifier (EfficientNet-Lite0)."""

# ruff: noqa: I001 (public names imported first, the importable rest after)

from .architectures import conv_layer_names, resnet18_cifar, torchvision_model, vgg8
from .imagenet import efficientnet_lite0
from .training import evaluate, freeze, predict_proba, seed_everything, train

# importable as interpkit.models.<name>, outside the public list (__all__)
from .architectures import VGG8, ResNet18CIFAR  # noqa: F401
from .imagenet import EfficientNetLite0  # noqa: F401
from .training import cache_dir, reinitialize  # noqa: F401

__all__ = [
    "vgg8",
    "resnet18_cifar",
    "torchvision_model",
    "conv_layer_names",
    "efficientnet_lite0",
    "train",
    "evaluate",
    "predict_proba",
    "freeze",
    "seed_everything",
]
