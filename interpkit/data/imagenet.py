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


# the real probe set: what ships in scikit-image, with what can be labelled honestly
PROBE_OBJECTS = {  # photograph -> image-level object label (no pixel object masks ship)
    "astronaut": "person",
    "coffee": "cup",
    "chelsea": "cat",
    "rocket": "rocket",
    "motorcycle": "motorcycle",
    "camera": "person",
    "coins": "coin",
}
PROBE_TEXTURES = ("brick", "grass", "gravel")  # whole-image texture labels
# Broden's eleven colour names with a prototype RGB each; every pixel gets the nearest one
PROBE_COLORS = {
    "black": (0.05, 0.05, 0.05),
    "blue": (0.15, 0.3, 0.75),
    "brown": (0.45, 0.3, 0.15),
    "green": (0.2, 0.55, 0.2),
    "grey": (0.5, 0.5, 0.5),
    "orange": (0.95, 0.55, 0.1),
    "pink": (0.95, 0.6, 0.75),
    "purple": (0.5, 0.2, 0.6),
    "red": (0.8, 0.1, 0.1),
    "white": (0.95, 0.95, 0.95),
    "yellow": (0.95, 0.9, 0.2),
}


def color_labels(images: torch.Tensor) -> torch.Tensor:
    """Name every pixel's colour: the nearest of :data:`PROBE_COLORS` (Broden's eleven colour
    names) in RGB.

    Args:
        images: float (N, 3, H, W) in [0, 1].

    Returns:
        int64 (N, H, W): 1 + the index of the colour name in ``PROBE_COLORS``.
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(
            "images must be a float (N, 3, H, W) tensor, got "
            f"{getattr(images, 'shape', type(images).__name__)}."
        )
    protos = torch.tensor(list(PROBE_COLORS.values()), dtype=torch.float32)  # (K, 3)
    d = ((images.float()[:, None] - protos[None, :, :, None, None]) ** 2).sum(2)
    return d.argmin(1) + 1


def _random_crop(image: torch.Tensor, size: int, rng: np.random.Generator) -> torch.Tensor:
    # a square crop covering 40-100 % of the short side, anywhere in the image, maybe mirrored
    _, h, w = image.shape
    side = int(round(min(h, w) * rng.uniform(0.4, 1.0)))
    top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = image[:, top : top + side, left : left + side]
    if rng.random() < 0.5:
        crop = crop.flip(-1)
    return center_square(crop, size)


def augmented_crops(
    images: dict[str, torch.Tensor], n: int, size: int = 224, seed: int = 0
) -> tuple[torch.Tensor, list[str]]:
    """``n`` random square crops (40-100 % of the short side, mirrored half the time) of
    full-resolution photographs, each resized to ``size``, drawn in turn from each photograph.

    Args:
        images: name -> float (3, H, W) in [0, 1] (e.g. :func:`interpkit.data.photographs`).
        n: number of crops.
        size: side of each crop.
        seed: the crops depend only on the seed and the arguments.

    Returns:
        float (n, 3, size, size) crops and the name of the photograph each came from.
    """
    n, size = check_positive_int("n", n), check_positive_int("size", size)
    if not images:
        raise ValueError("images is empty; pass {name: (3, H, W) image}.")
    rng = np.random.default_rng(seed)
    names = list(images)
    out, src = [], []
    for i in range(n):
        name = names[i % len(names)]
        out.append(_random_crop(images[name], size, rng))
        src.append(name)
    return torch.stack(out), src


def _probe_sources() -> dict[str, torch.Tensor]:
    sources = photographs(tuple(n for n in PROBE_OBJECTS if n != "motorcycle") + PROBE_TEXTURES)
    sources["motorcycle"] = _motorcycle()
    return {n: sources[n] for n in (*PROBE_OBJECTS, *PROBE_TEXTURES)}


def real_probe(size: int = 224, views: int = 4, seed: int = 0):
    """A small real concept probe set in the Broden format, from photographs that ship in
    scikit-image: for each of the 7 object photographs and 3 texture photographs, its central
    square and ``views - 1`` random crops (:func:`augmented_crops`), at ``size`` px.

    Labels: ``color`` (pixel masks: every pixel's nearest Broden colour name,
    ``color_labels``), ``object`` (image-level: person, cup, cat, rocket, motorcycle, coin;
    no pixel object masks ship in the installed packages) and ``texture`` (image-level: brick,
    grass, gravel on the texture photographs). Masks are at half resolution, as in Broden.
    With the default ``views=4`` it holds 40 images: enough to illustrate what a unit responds
    to, far too few for the statistics of a 60,000-image Broden.

    Args:
        size: image side (at least 32).
        views: images per photograph (1: the central square only).
        seed: seed of the crops.

    Returns:
        an :class:`interpkit.data.InMemoryBroden` (``image_names`` say which photograph and view).
    """
    from .broden import InMemoryBroden, half_resolution

    size, views = check_positive_int("size", size), check_positive_int("views", views)
    if size < 32:
        raise ValueError(f"size must be at least 32 px, got {size}.")
    sources = _probe_sources()
    imgs, names = [], []
    for k, (name, full) in enumerate(sources.items()):
        imgs.append(center_square(full, size))
        names.append(f"{name}/0")
        if views > 1:
            crops, _ = augmented_crops({name: full}, views - 1, size, seed=seed * 1000 + k)
            imgs.extend(crops)
            names.extend(f"{name}/{v}" for v in range(1, views))
    x = torch.stack(imgs)
    colors = list(PROBE_COLORS)
    objects = sorted(set(PROBE_OBJECTS.values()))
    label_names = ["-", *colors, *objects, *PROBE_TEXTURES]
    label_cats = ["", *["color"] * len(colors), *["object"] * len(objects)]
    label_cats += ["texture"] * len(PROBE_TEXTURES)
    src = [nm.split("/")[0] for nm in names]
    obj = np.array(
        [
            [1 + len(colors) + objects.index(PROBE_OBJECTS[s])] if s in PROBE_OBJECTS else [0]
            for s in src
        ],
        np.int64,
    )
    tex = np.array(
        [
            [1 + len(colors) + len(objects) + PROBE_TEXTURES.index(s)]
            if s in PROBE_TEXTURES
            else [0]
            for s in src
        ],
        np.int64,
    )
    col = half_resolution(color_labels(x).numpy().astype(np.int32))[:, None]
    return InMemoryBroden(
        images=np.round(x.numpy() * 255.0).astype(np.uint8),
        pixel={"color": col},
        scalar={"object": obj, "texture": tex},
        label_names=label_names,
        label_categories=label_cats,
        categories=["color", "object", "texture"],
        splits=["train"] * len(x),
        image_names=names,
    )
