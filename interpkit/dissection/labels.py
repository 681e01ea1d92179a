"""The label side of a dissection: which labels are scored (the label space of a Broden-style
dataset), and per batch the packed pixel labels, image-level labels and label pixel counts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

_DATASET_ATTRS = ("labels", "categories", "seg_shape", "segmentation_batch", "__len__")


@dataclass
class _LabelSpace:
    table: pd.DataFrame  # label, name, category (primary)
    categories: list[str]
    primary: np.ndarray  # (L,) category index, -1 for none (label 0)
    lut: torch.Tensor  # (L,) label -> itself, or 0 when its category is not selected
    labelcat: torch.Tensor  # (L, C) float one-hot of the primary category (row 0 zero)
    identity: bool = False  # no category filter: lut maps every label to itself

    @property
    def num_labels(self) -> int:
        return len(self.primary)


def _label_space(dataset: Any, categories: Sequence[str] | None, dev: torch.device) -> _LabelSpace:
    missing = [a for a in _DATASET_ATTRS if not hasattr(dataset, a)]
    if missing:
        raise TypeError(
            f"the dataset lacks {', '.join(missing)}; pass an interpkit.data.Broden or "
            "ConceptWorld.as_broden(...) (or an object with the same interface)."
        )
    cats = list(dataset.categories)
    if categories is not None:
        if isinstance(categories, str):
            categories = [categories]
        unknown = [c for c in categories if c not in cats]
        if unknown:
            raise KeyError(
                f"the label dictionary has no categor{'y' if len(unknown) == 1 else 'ies'} "
                f"{', '.join(map(repr, unknown))}; it has {cats}."
            )
    labels = dataset.labels
    if not isinstance(labels, pd.DataFrame) or not {"name", "category"} <= set(labels.columns):
        raise TypeError(
            "dataset.labels must be a pandas DataFrame with columns 'name' and 'category'."
        )
    L = len(labels)
    if L < 2 or not np.array_equal(np.asarray(labels.index), np.arange(L)):
        raise ValueError(
            "dataset.labels must be indexed by label number 0..L-1 (row 0 = unlabeled) and hold "
            f"at least one label; got index {list(labels.index[:5])}... of length {L}."
        )
    cat_of = labels["category"].to_numpy()
    # a label whose primary category is not in dataset.categories (e.g. a Broden label table
    # listing a
    # category the reader does not load) is treated like a label of an unselected category: its
    # pixels
    # count as unlabeled, its column of the IoU matrix is 0 and its category is reported as ""
    primary = np.array([cats.index(c) if c in cats else -1 for c in cat_of], dtype=np.int64)
    primary[0] = -1
    selected = primary >= 0
    if categories is not None:
        selected &= np.isin(primary, [cats.index(c) for c in categories])
    selected[0] = False
    if not selected.any():
        raise ValueError(
            f"no label to score: none of the labels of dataset.labels has a category in "
            f"{list(categories) if categories is not None else cats}; pass categories=None or some "
            f"of {sorted(set(cat_of[1:]) & set(cats)) or cats}, or check dataset.categories."
        )
    lut = torch.where(torch.as_tensor(selected), torch.arange(L), torch.zeros(L, dtype=torch.long))
    labelcat = torch.zeros(L, len(cats))
    known = torch.as_tensor(np.flatnonzero(primary >= 0))
    labelcat[known, torch.as_tensor(primary[primary >= 0])] = 1.0
    table = pd.DataFrame(
        {
            "label": np.arange(L),
            "name": labels["name"].astype(str).to_numpy(),
            "category": [cats[p] if p >= 0 else "" for p in primary],
        }
    )
    return _LabelSpace(
        table, cats, primary, lut.to(dev), labelcat.to(dev), identity=bool(selected[1:].all())
    )


def _label_bits(L: int) -> int:
    return 16 if L <= 1 << 16 else 32


def _pack_labels(pix: torch.Tensor, L: int) -> torch.Tensor:
    """Pixel label layers (B, K, sh, sw) packed 4 (or 2, for more than 65536 labels) to an int64:
    (B, ceil(K / per), sh * sw). One gather per pixel then fetches all its layers."""
    bits = _label_bits(L)
    per = 64 // bits
    B, K = pix.shape[:2]
    G = -(-K // per)
    flat = pix.reshape(B, K, -1)
    if G * per != K:
        flat = torch.cat([flat, flat.new_zeros(B, G * per - K, flat.shape[2])], dim=1)
    flat = flat.view(B, G, per, -1)
    out = flat[:, :, 0].clone()
    for j in range(1, per):
        out |= flat[:, :, j] << (bits * j)
    return out


def _unpack_labels(codes: torch.Tensor, L: int) -> torch.Tensor:
    """Inverse of ``_pack_labels`` for gathered codes (M,) -> labels (M, per)."""
    bits = _label_bits(L)
    shifts = torch.arange(0, 64, bits, device=codes.device)
    return (codes[:, None] >> shifts) & ((1 << bits) - 1)


@dataclass
class _LabelBatch:
    """The labels of one batch as the tally reads them."""

    n: int  # images
    packed: torch.Tensor  # (B, G, sh * sw) pixel labels, packed (see _pack_labels)
    scalar_counts: torch.Tensor  # (B, L) image-level label counts
    label_pixels: torch.Tensor  # (L,) pixel count G of each label in the batch


def _label_batch(
    pix: Any, sc: Any, B: int, space: _LabelSpace, seg_shape: tuple[int, int], dev: torch.device
) -> _LabelBatch:
    """Checked, category-filtered and packed labels of one batch from the dataset's pixel labels
    (B, K, sh, sw) and image-level labels (B, S)."""
    L = space.num_labels
    pix = torch.as_tensor(pix).to(dev, torch.long)
    sc = torch.as_tensor(sc).to(dev, torch.long).reshape(B, -1)
    sh, sw = seg_shape
    if pix.ndim != 4 or pix.shape[0] != B or tuple(pix.shape[2:]) != (sh, sw):
        raise ValueError(
            f"the dataset returned pixel labels of shape {tuple(pix.shape)}; expected "
            f"({B}, K, {sh}, {sw}) (dataset.seg_shape = {(sh, sw)})."
        )
    for what, t in (("pixel", pix), ("image-level", sc)):
        if t.numel():
            lo, hi = (int(v) for v in torch.aminmax(t))
            if lo < 0 or hi >= L:
                raise ValueError(
                    f"{what} label numbers must lie in 0..{L - 1} (rows of dataset.labels), "
                    f"found {lo}..{hi}."
                )
    if not space.identity:
        pix, sc = space.lut[pix], space.lut[sc]
    sc1h = torch.zeros(B, L, dtype=torch.long, device=dev)
    if sc.shape[1]:
        sc1h.scatter_add_(1, sc, torch.ones_like(sc))
    sc1h[:, 0] = 0
    return _LabelBatch(B, _pack_labels(pix, L), sc1h, _label_pixels(pix, sc1h, L))


def _label_pixels(pix: torch.Tensor, sc1h: torch.Tensor, L: int) -> torch.Tensor:
    g = (
        torch.bincount(pix.flatten(), minlength=L)
        if pix.numel()
        else torch.zeros(L, dtype=torch.long, device=sc1h.device)
    )
    g = g + sc1h.sum(dim=0) * (pix.shape[2] * pix.shape[3])
    g[0] = 0
    return g
