"""The in-memory Broden twin (e.g. ``ConceptWorld.as_broden``); see :mod:`interpkit.data.broden`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from ..checks import row_indices
from ._broden_common import META_COLUMNS, _BrodenBase, _labels_frame


class InMemoryBroden(_BrodenBase):
    """Broden-style data held in arrays, with the same interface as ``Broden``.

    Args:
        images: uint8 ``(N, 3, H, W)``.
        pixel: category -> integer label numbers ``(N, k, sh, sw)`` (0 = unlabeled; all-zero
            layers are dropped per image, like empty cells in index.csv).
        scalar: category -> image-level label numbers ``(N, m)`` (0 = none).
        label_names: name of each label number (index 0 is the unlabeled "-").
        label_categories: category (or categories) each label number belongs to.
        categories: category order (default: pixel then scalar categories).
        splits, image_names: per-image split and file stem (used by ``write_broden``).

    Statistics (frequency: images holding a label; coverage: summed pixel fraction, 1 per image for
    image-level labels) are computed from the data, as the Broden tools do.
    """

    def __init__(
        self,
        images: np.ndarray,
        pixel: dict[str, np.ndarray],
        scalar: dict[str, np.ndarray],
        label_names: Sequence[str],
        label_categories: Sequence[str | Sequence[str]],
        categories: Sequence[str] | None = None,
        splits: Sequence[str] | None = None,
        image_names: Sequence[str] | None = None,
    ) -> None:
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(
                f"images must be uint8 (N, 3, H, W), got {images.dtype} {images.shape}."
            )
        N = len(images)
        if N == 0:
            raise ValueError("images is empty (N = 0); pass at least one image.")
        self.categories = list(categories) if categories is not None else [*pixel, *scalar]
        if sorted(self.categories) != sorted([*pixel, *scalar]):
            raise ValueError(
                f"categories {self.categories} must list each of {[*pixel, *scalar]} once."
            )
        clash = [c for c in self.categories if c in META_COLUMNS]
        if (
            clash
        ):  # index.csv has these columns already: write_broden would write a header with them twice
            raise ValueError(
                f"categories {clash} have the names of index.csv's own columns {META_COLUMNS}; "
                "rename them."
            )
        self.pixel_categories = [c for c in self.categories if c in pixel]
        self.scalar_categories = [c for c in self.categories if c in scalar]
        L = len(label_names)
        self._images = images
        self.image_shape = (int(images.shape[2]), int(images.shape[3]))
        shapes = {np.shape(a)[2:] for a in pixel.values()}
        if len(shapes) > 1:
            raise ValueError(f"all pixel categories need one segmentation shape, got {shapes}.")
        self.seg_shape = (
            tuple(int(s) for s in shapes.pop())
            if shapes
            else (self.image_shape[0] // 2, self.image_shape[1] // 2)
        )
        self._pixel: dict[str, np.ndarray] = {}
        self._nonzero: dict[str, np.ndarray] = {}
        for c in self.pixel_categories:
            a = np.asarray(pixel[c])
            if a.ndim != 4 or a.shape[0] != N:
                raise ValueError(f"pixel[{c!r}] must be (N={N}, k, sh, sw), got {a.shape}.")
            if a.size and (a.min() < 0 or a.max() >= L):
                raise ValueError(
                    f"pixel[{c!r}] holds label numbers outside 0..{L - 1} (label_names)."
                )
            nz = a.reshape(N, a.shape[1], -1).any(-1)
            if (np.diff(nz.astype(np.int8), axis=1) > 0).any():  # move non-empty layers first
                order = np.argsort(~nz, axis=1, kind="stable")
                a = np.take_along_axis(a, order[:, :, None, None], axis=1)
                nz = np.take_along_axis(nz, order, axis=1)
            self._pixel[c], self._nonzero[c] = a, nz
        self._scalar = {}
        for c in self.scalar_categories:
            a = np.asarray(scalar[c])
            if a.ndim == 0 or a.shape[0] != N:
                raise ValueError(f"scalar[{c!r}] must be (N={N},) or (N, m), got {a.shape}.")
            a = a.reshape(N, -1)
            if a.size and (a.min() < 0 or a.max() >= L):
                raise ValueError(
                    f"scalar[{c!r}] holds label numbers outside 0..{L - 1} (label_names)."
                )
            self._scalar[c] = a
        self._splits = list(splits) if splits is not None else ["train"] * N
        self.image_names = (
            list(image_names) if image_names is not None else [f"{i:06d}" for i in range(N)]
        )
        if len(self._splits) != N or len(self.image_names) != N:
            raise ValueError("splits and image_names need one entry per image.")
        self._layout(
            {c: int(self._nonzero[c].sum(1).max(initial=0)) for c in self.pixel_categories},
            {c: int((self._scalar[c] > 0).sum(1).max(initial=0)) for c in self.scalar_categories},
        )
        self.labels, self.category_info = self._statistics(list(label_names), label_categories)

    def _statistics(
        self, names: list[str], label_categories: Sequence[str | Sequence[str]]
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        N, L = len(self), len(names)
        members = [
            [c] if isinstance(c, str) and c else ([] if isinstance(c, str) else list(c))
            for c in label_categories
        ]
        if len(members) != L:
            raise ValueError(
                f"label_categories needs {L} entries (one per label), got {len(members)}."
            )
        per_cat, freq_any, cov_total = {}, np.zeros((N, L), bool), np.zeros(L)
        cat_rows = []
        for c in self.categories:
            if c in self._pixel:
                a = self._pixel[c]
                flat = a.reshape(N, -1)
                counts = np.bincount(
                    (flat + np.arange(N)[:, None] * L).ravel(), minlength=N * L
                ).reshape(N, L)
                counts[:, 0] = 0
                cov = counts.sum(0) / float(a.shape[2] * a.shape[3])
            else:
                a = self._scalar[c]
                counts = np.zeros((N, L), np.int64)
                np.add.at(counts, (np.repeat(np.arange(N), a.shape[1]), a.ravel()), 1)
                counts[:, 0] = 0
                cov = (counts > 0).sum(0).astype(np.float64)
            present = counts > 0
            freq = present.sum(0)
            code = np.zeros(L, np.int64)
            nums = [n for n in range(1, L) if c in members[n]]
            code[nums] = np.arange(1, len(nums) + 1)
            per_cat[c] = (code, np.where(code > 0, freq, 0), np.where(code > 0, cov, 0.0))
            freq_any |= present
            cov_total += np.where(code > 0, cov, 0.0)
            cat_rows.append(
                {
                    "name": c,
                    "first": min(nums, default=0),
                    "last": max(nums, default=0),
                    "count": len(nums),
                    "frequency": int(present.any(1).sum()),
                }
            )
        fallback = [{c: 1 for c in m} for m in members]
        syns = [""] * L
        labels = _labels_frame(names, syns, freq_any.sum(0), cov_total, per_cat, fallback)
        labels.loc[0, "name"] = "-"
        info = pd.DataFrame(cat_rows).set_index("name") if cat_rows else pd.DataFrame()
        return labels, info

    def __len__(self) -> int:
        return len(self._images)

    def _image(self, i: int) -> torch.Tensor:
        return torch.from_numpy(self._images[i]).float().div_(255.0)

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for a set of {len(self)} images")
        i = i % len(self)
        masks = {
            c: torch.from_numpy(self._pixel[c][i][self._nonzero[c][i]].astype(np.int64))
            for c in self.pixel_categories
        }
        scalars = {
            c: torch.from_numpy(self._scalar[c][i][self._scalar[c][i] > 0].astype(np.int64))
            for c in self.scalar_categories
        }
        return {
            "image": self._image(i),
            "masks": masks,
            "scalars": scalars,
            "split": self._splits[i],
        }

    def images_batch(self, indices: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Only the images of ``indices`` as float32 (B, 3, H, W)."""
        idx = row_indices(indices, len(self)).numpy()
        return torch.from_numpy(self._images[idx]).float().div_(255.0)

    def segmentation_batch(
        self, indices: Sequence[int] | torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Images, stacked pixel-label layers and image-level labels of ``indices`` (see module
        doc)."""
        idx = row_indices(indices, len(self)).numpy()
        images = torch.from_numpy(self._images[idx]).float().div_(255.0)
        sh, sw = self.seg_shape
        pixel = np.zeros((len(idx), len(self.layer_categories), sh, sw), np.int64)
        for c in self.pixel_categories:
            o, k = self._layer_offset[c], self.layer_categories.count(c)
            pixel[:, o : o + k] = self._pixel[c][idx, :k]
        scal = np.zeros((len(idx), len(self.scalar_label_categories)), np.int64)
        for c in self.scalar_categories:
            o, k = self._scalar_offset[c], self.scalar_label_categories.count(c)
            a = self._scalar[c][idx]
            # non-zero entries first, keeping their order
            order = np.argsort(a <= 0, axis=1, kind="stable")
            scal[:, o : o + k] = np.take_along_axis(a, order, axis=1)[:, :k]
        return images, torch.from_numpy(pixel), torch.from_numpy(scal)
