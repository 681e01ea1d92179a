"""Datasets: offline real images, the synthetic concept world, and the Broden format."""
from .base import ImageSet
from .offline import mnist5k, photographs, sklearn_digits, torchvision_set

__all__ = ["ImageSet", "mnist5k", "sklearn_digits", "photographs", "torchvision_set"]

try:  # the concept world and Broden reader (interpkit.data.world / .broden)
    from .world import ConceptWorld, WorldSet  # noqa: F401
    from .broden import Broden  # noqa: F401

    __all__ += ["ConceptWorld", "WorldSet", "Broden"]
except ImportError:  # pragma: no cover - only while those modules are being written
    pass
