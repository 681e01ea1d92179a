"""``ImageSet``: the one in-memory container of labelled images that models and methods accept."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, fields, replace
from typing import Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset


@dataclass
class ImageSet(Dataset):
    """Images (float32, N x C x H x W, values in [0, 1]) with integer class labels.

    Subclasses may add further per-image tensors (first axis N); ``subset``, ``split`` and
    ``resized`` carry them along (tensors whose first axis is N are indexed, others copied).
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str] = field(default_factory=list)
    name: str = "images"

    def __post_init__(self) -> None:
        if not isinstance(self.images, torch.Tensor) or self.images.ndim != 4:
            shape = getattr(self.images, "shape", None)
            raise ValueError(f"{self.name}: images must be a tensor of shape (N, C, H, W), got shape {shape}; "
                             "add a channel axis with images[:, None] for grey images.")
        if len(self.images) == 0:
            raise ValueError(f"{self.name}: the dataset is empty; pass at least one image.")
        if self.images.dtype != torch.float32:
            self.images = self.images.float()
        self.labels = torch.as_tensor(self.labels, dtype=torch.long)
        if self.labels.shape != (len(self.images),):
            raise ValueError(f"{self.name}: {len(self.images)} images but labels of shape "
                             f"{tuple(self.labels.shape)}; pass one integer label per image.")
        if not self.classes:
            self.classes = [str(i) for i in range(int(self.labels.max()) + 1)]

    # -- Dataset protocol -------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.labels[i]

    # -- properties ---------------------------------------------------------------------------
    @property
    def num_channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    # -- derived sets -------------------------------------------------------------------------
    def _per_image_fields(self) -> list[str]:
        n = len(self.images)
        return [f.name for f in fields(self)
                if isinstance(getattr(self, f.name), torch.Tensor) and getattr(self, f.name).ndim >= 1
                and getattr(self, f.name).shape[0] == n]

    def subset(self, index: Sequence[int] | torch.Tensor) -> "ImageSet":
        """A new set holding the images at ``index`` (and every other per-image tensor)."""
        idx = torch.as_tensor(index, dtype=torch.long)
        if idx.numel() == 0:
            raise ValueError(f"{self.name}: subset index is empty; select at least one image.")
        return replace(self, **{k: getattr(self, k)[idx] for k in self._per_image_fields()})

    def split(self, n_train: int, n_test: int, seed: int = 0) -> tuple["ImageSet", "ImageSet"]:
        """Disjoint random train and test subsets of the requested sizes (seeded)."""
        if n_train <= 0 or n_test <= 0:
            raise ValueError(f"n_train and n_test must be positive, got {n_train} and {n_test}.")
        if n_train + n_test > len(self):
            raise ValueError(f"{self.name} has {len(self)} images; cannot split into {n_train} + {n_test}. "
                             "Lower n_train or n_test.")
        g = torch.Generator().manual_seed(seed)
        perm = torch.randperm(len(self), generator=g)
        tr, te = self.subset(perm[:n_train]), self.subset(perm[n_train:n_train + n_test])
        tr.name, te.name = f"{self.name}-train", f"{self.name}-test"
        return tr, te

    def resized(self, size: int | tuple[int, int]) -> "ImageSet":
        """The same set with images resized bilinearly to ``size`` (masks are not resized)."""
        size = (size, size) if isinstance(size, int) else tuple(size)
        if tuple(self.image_size) == size:
            return self
        imgs = F.interpolate(self.images, size=size, mode="bilinear", align_corners=False,
                             antialias=True).clamp_(0, 1)
        return replace(self, images=imgs)

    def to_rgb(self) -> "ImageSet":
        """Grey images repeated to three channels (RGB sets are returned unchanged)."""
        if self.num_channels == 3:
            return self
        if self.num_channels != 1:
            raise ValueError(f"to_rgb needs 1 or 3 channels, got {self.num_channels}.")
        return replace(self, images=self.images.repeat(1, 3, 1, 1))

    def fingerprint(self) -> str:
        """A short content hash of images and labels (used as part of model-cache keys)."""
        h = hashlib.sha256()
        h.update(str(tuple(self.images.shape)).encode())
        h.update(self.images.contiguous().numpy().tobytes())
        h.update(self.labels.numpy().tobytes())
        return h.hexdigest()[:16]

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, n={len(self)}, channels={self.num_channels}, "
                f"size={self.image_size}, classes={self.num_classes})")
