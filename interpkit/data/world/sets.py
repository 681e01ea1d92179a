"""Rendered concept-world images with their masks: an ImageSet and a lazy Dataset."""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch.utils.data import Dataset

from ..base import ImageSet
from .spec import _empty

if TYPE_CHECKING:
    from .generator import ConceptWorld


@dataclass(repr=False)
class WorldSet(ImageSet):
    """Concept-world images with their annotations (see the module docstring for label schemes).

    ``resized`` resizes the images only: masks and landmarks keep the original size. To work at
    another resolution, make a ``ConceptWorld(size=...)`` instead (same seed, same scenes).
    """

    scene: torch.Tensor = field(default_factory=_empty)  # (n,) long
    object_mask: torch.Tensor = field(default_factory=_empty)  # (n, H, W) long
    part_mask: torch.Tensor = field(default_factory=_empty)  # (n, H, W) long
    color_mask: torch.Tensor = field(default_factory=_empty)  # (n, H, W) long
    texture_mask: torch.Tensor = field(default_factory=_empty)  # (n, H, W) long
    landmarks: torch.Tensor = field(default_factory=_empty)  # (n, n_parts, 2) float32 (y, x)
    index: torch.Tensor = field(default_factory=_empty)  # (n,) long: generator index
    part_names: list[str] = field(default_factory=list)
    color_names: list[str] = field(default_factory=list)
    texture_names: list[str] = field(default_factory=list)
    scene_names: list[str] = field(default_factory=list)

    def masks(self, i: int) -> dict[str, torch.Tensor]:
        """The four pixel masks of image ``i`` as a dict (object, part, color, texture)."""
        return {
            "object": self.object_mask[i],
            "part": self.part_mask[i],
            "color": self.color_mask[i],
            "texture": self.texture_mask[i],
        }


class WorldDataset(Dataset):
    """Lazily rendered concept-world images ``start .. start + n - 1``.

    ``ds[i]`` is ``(image, label)``, or ``(image, label, annotations)`` when ``with_masks``;
    ``ds.sample(i)`` always returns the full annotation dict.
    """

    def __init__(
        self, world: ConceptWorld, n: int, start: int = 0, with_masks: bool = False
    ) -> None:
        world._check_range(n, start)
        self.world, self.n, self.start, self.with_masks = world, int(n), int(start), with_masks
        self.classes = list(world.object_names)

    def __len__(self) -> int:
        return self.n

    def sample(self, i: int) -> dict[str, torch.Tensor]:
        """All annotations of item ``i``: image, label, scene, the four masks, landmarks."""
        try:
            if isinstance(i, bool):
                raise TypeError
            i = operator.index(i)  # int, NumPy integer or 0-d integer tensor
        except TypeError:
            raise TypeError(
                f"a WorldDataset index must be an integer, got {i!r} ({type(i).__name__})."
            ) from None
        if not -self.n <= i < self.n:
            raise IndexError(f"index {i} out of range for a WorldDataset of {self.n} images")
        return self.world.render(self.start + (i % self.n))

    def __getitem__(self, i: int):
        s = self.sample(i)
        if self.with_masks:
            return s["image"], s["label"], s
        return s["image"], s["label"]


# ---------------------------------------------------------------------------------------------
# The generator
