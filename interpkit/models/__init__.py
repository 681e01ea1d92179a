"""Classifiers and their cached training, and a real ImageNet classifier (EfficientNet-Lite0)."""

from .architectures import (
    VGG8,
    ResNet18CIFAR,
    conv_layer_names,
    resnet18_cifar,
    torchvision_model,
    vgg8,
)
from .imagenet import EfficientNetLite0, efficientnet_lite0
from .training import (
    cache_dir,
    evaluate,
    freeze,
    predict_proba,
    reinitialize,
    seed_everything,
    train,
)

__all__ = [
    "VGG8",
    "ResNet18CIFAR",
    "vgg8",
    "resnet18_cifar",
    "torchvision_model",
    "conv_layer_names",
    "EfficientNetLite0",
    "efficientnet_lite0",
    "train",
    "evaluate",
    "predict_proba",
    "freeze",
    "reinitialize",
    "seed_everything",
    "cache_dir",
]
