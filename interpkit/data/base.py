"""``ImageSet``: the one in-memory container of labelled images that models and methods accept."""

from __future__ import annotations

import hashlib
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..checks import check_pixel_values, check_positive_int, row_indices


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
            raise ValueError(
                f"{self.name}: images must be a tensor of shape (N, C, H, W), got shape {shape}; "
                "add a channel axis with images[:, None] for grey images."
            )
        if len(self.images) == 0:
            raise ValueError(f"{self.name}: the dataset is empty; pass at least one image.")
        if not (torch.is_floating_point(self.images) or self.images.dtype == torch.bool):
            raise TypeError(
                f"{self.name}: images must be floating point in [0, 1], got {self.images.dtype}; "
                "use images.float() / 255 for 8-bit images."
            )
        if self.images.dtype != torch.float32:
            self.images = self.images.float()
        check_pixel_values(self.images, f"{self.name}: images")  # finite, in [0, 1] (not 0..255)
        raw = torch.as_tensor(self.labels)
        if torch.is_floating_point(raw) and not bool(
            (torch.isfinite(raw) & (raw == raw.round())).all()
        ):
            raise ValueError(
                f"{self.name}: labels must be whole numbers (class indices), got "
                f"{raw[~(torch.isfinite(raw) & (raw == raw.round()))][:5].tolist()}."
            )
        self.labels = raw.long()
        if self.labels.shape != (len(self.images),):
            raise ValueError(
                f"{self.name}: {len(self.images)} images but labels of shape "
                f"{tuple(self.labels.shape)}; pass one integer label per image."
            )
        if int(self.labels.min()) < 0:
            raise ValueError(
                f"{self.name}: labels must be class indices >= 0, got {int(self.labels.min())}."
            )
        if not self.classes:
            self.classes = [str(i) for i in range(int(self.labels.max()) + 1)]
        elif int(self.labels.max()) >= len(self.classes):
            raise ValueError(
                f"{self.name}: a label is {int(self.labels.max())} but only {len(self.classes)} "
                "classes are named; pass one name per class (or classes=[] to number them)."
            )

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
        return [
            f.name
            for f in fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
            and getattr(self, f.name).ndim >= 1
            and getattr(self, f.name).shape[0] == n
        ]

    def subset(self, index: Sequence[int] | torch.Tensor) -> ImageSet:
        """A new set holding the images at ``index`` (and every other per-image tensor)."""
        idx = torch.as_tensor(index)
        if idx.numel() == 0:
            raise ValueError(f"{self.name}: subset index is empty; select at least one image.")
        if idx.ndim != 1:
            raise ValueError(
                f"{self.name}: subset takes a 1-D list of indices or a boolean mask, got shape "
                f"{tuple(idx.shape)}; e.g. subset([i]) for one image."
            )
        idx = row_indices(idx, len(self), f"{self.name}: subset indices")
        if idx.numel() == 0:
            raise ValueError(f"{self.name}: the subset mask selects no image; select at least one.")
        return replace(self, **{k: getattr(self, k)[idx] for k in self._per_image_fields()})

    def split(self, n_train: int, n_test: int, seed: int = 0) -> tuple[ImageSet, ImageSet]:
        """Disjoint random train and test subsets of the requested sizes (seeded)."""
        n_train, n_test = (
            check_positive_int("n_train", n_train),
            check_positive_int("n_test", n_test),
        )
        if n_train + n_test > len(self):
            raise ValueError(
                f"{self.name} has {len(self)} images; cannot split into {n_train} + {n_test}. "
                "Lower n_train or n_test."
            )
        g = torch.Generator().manual_seed(seed)
        perm = torch.randperm(len(self), generator=g)
        tr, te = self.subset(perm[:n_train]), self.subset(perm[n_train : n_train + n_test])
        tr.name, te.name = f"{self.name}-train", f"{self.name}-test"
        return tr, te

    def resized(self, size: int | tuple[int, int]) -> ImageSet:
        """The same set with images resized bilinearly to ``size`` (masks are not resized)."""
        pair = (size, size) if isinstance(size, numbers.Integral) else size
        try:
            pair = tuple(pair)
        except TypeError:
            pair = ()
        if len(pair) != 2:
            raise ValueError(f"size must be an integer or a pair (height, width), got {size!r}.")
        size = (check_positive_int("size", pair[0]), check_positive_int("size", pair[1]))
        if tuple(self.image_size) == size:
            return self
        imgs = F.interpolate(
            self.images, size=size, mode="bilinear", align_corners=False, antialias=True
        ).clamp_(0, 1)
        return replace(self, images=imgs)

    def to_rgb(self) -> ImageSet:
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
        return (
            f"{type(self).__name__}(name={self.name!r}, n={len(self)}, "
            f"channels={self.num_channels}, "
            f"size={self.image_size}, classes={self.num_classes})"
        )


def require_image_set(data: object, what: str) -> None:
    """Raise a ``TypeError`` that says how to wrap tensors unless ``data`` is an :class:`ImageSet`
    (the trainers need its labels and class names, not bare tensors)."""
    if not isinstance(data, ImageSet):
        raise TypeError(
            f"{what} must be an interpkit.data.ImageSet, got {type(data).__name__}; wrap tensors "
            "with ImageSet(images, labels)."
        )
