"""ImageNet class names and real photographs sized for an ImageNet classifier, offline."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch.nn import functional as F

from ..checks import check_positive_int
from .offline import PHOTOGRAPHS, photographs

# photographs that ship with scikit-image and show something ImageNet has a class for (or near
# one): a cat, a cup of espresso, a rocket on its pad, a motorcycle, an astronaut with a flag
REAL_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle")


@lru_cache(maxsize=1)
def _imagenet_classes() -> tuple[str, ...]:
    from torchvision.models import EfficientNet_B0_Weights

    names = tuple(EfficientNet_B0_Weights.IMAGENET1K_V1.meta["categories"])
    if len(names) != 1000:  # pragma: no cover - a torchvision that changed its metadata
        raise RuntimeError(f"torchvision lists {len(names)} ImageNet classes, expected 1000.")
    return names


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet-1k class names in the order of the logits of ImageNet classifiers
    (``interpkit.models.efficientnet_lite0``, torchvision's models): index 281 is ``'tabby'``,
    967 ``'espresso'``. Read from torchvision's metadata; nothing is downloaded."""
    return list(_imagenet_classes())


def center_square(image: torch.Tensor, size: int) -> torch.Tensor:
    """Crop the central square of a (C, H, W) image and resize it to (C, size, size) (bilinear,
    antialiased when shrinking), clipped to [0, 1]."""
    if not isinstance(image, torch.Tensor) or image.ndim != 3:
        raise ValueError(
            "image must be a (C, H, W) tensor, got "
            f"{getattr(image, 'shape', type(image).__name__)}."
        )
    size = check_positive_int("size", size)
    _, h, w = image.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = image[:, top : top + side, left : left + side].float()
    if side != size:
        square = F.interpolate(
            square[None],
            size=(size, size),
            mode="bilinear",
            align_corners=False,
            antialias=side > size,
        )[0]
    return square.clamp(0, 1).contiguous()


def _motorcycle() -> torch.Tensor:
    import skimage.data

    left = np.asarray(skimage.data.stereo_motorcycle()[0])  # the left view of the stereo pair
    return torch.from_numpy(left[..., :3].astype(np.float32) / 255.0).permute(2, 0, 1).contiguous()


def real_photos(
    size: int = 224, names: tuple[str, ...] | str = REAL_PHOTOS
) -> dict[str, torch.Tensor]:
    """Real colour photographs shipped with scikit-image, for an ImageNet classifier.

    Returns ``{name: float32 tensor (3, size, size) in [0, 1]}``: each photograph's central square,
    resized. ``names`` may be any of :func:`interpkit.data.photographs`' names
    (``astronaut``, ``coffee``, ``chelsea``, ``rocket``, ...) and ``motorcycle`` (the left view of
    ``skimage.data.stereo_motorcycle``). Works offline.
    """
    size = check_positive_int("size", size)
    if isinstance(names, str):
        names = (names,)
    names = tuple(names)
    if not names:
        raise ValueError(f"names is empty; choose from {', '.join(REAL_PHOTOS + PHOTOGRAPHS[4:])}.")
    shipped = photographs(tuple(n for n in names if n != "motorcycle"))
    out = {}
    for name in names:
        out[name] = center_square(_motorcycle() if name == "motorcycle" else shipped[name], size)
    return out
