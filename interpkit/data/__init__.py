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
    "real_probe",
    "augmented_crops",
    "REAL_PHOTOS",
]
