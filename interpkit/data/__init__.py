# ruff: noqa: F401 (names outside __all__ stay importable)
"""Datasets: offline real images (also ImageNet-sized photographs and class names), the synthetic
concept world, and the Broden format."""

from .base import ImageSet
from .broden import Broden, InMemoryBroden, half_resolution, write_broden
from .imagenet import REAL_PHOTOS, augmented_crops, imagenet_classes, real_photos, real_probe
from .offline import mnist5k, photographs, sklearn_digits, torchvision_set
from .world import ConceptWorld, WorldDataset, WorldSet

__all__ = [
    "ImageSet",
    "mnist5k",
    "photographs",
    "torchvision_set",
    "ConceptWorld",
    "Broden",
    "write_broden",
    "imagenet_classes",
    "real_photos",
    "real_probe",
    "augmented_crops",
]
