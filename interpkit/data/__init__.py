"""Datasets: offline real images (also ImageNet-sized photographs and class names), the synthetic
concept world, and the Broden format."""

from .base import ImageSet
from .broden import Broden, InMemoryBroden, half_resolution, write_broden
from .imagenet import REAL_PHOTOS, imagenet_classes, real_photos
from .offline import mnist5k, photographs, sklearn_digits, torchvision_set
from .world import ConceptWorld, WorldDataset, WorldSet

__all__ = [
    "ImageSet",
    "mnist5k",
    "sklearn_digits",
    "photographs",
    "torchvision_set",
    "ConceptWorld",
    "WorldSet",
    "WorldDataset",
    "Broden",
    "InMemoryBroden",
    "write_broden",
    "half_resolution",
    "imagenet_classes",
    "real_photos",
    "REAL_PHOTOS",
]
