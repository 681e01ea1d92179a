"""The tally of a dissection (pass 2): per layer, unit x label intersections, category-restricted
activation totals and unit areas, summed over batches.

All counts are integer sums, so tallies of disjoint shards of the dataset combine exactly
(``combine_tallies``): a distributed run tallies each shard with ``tally_shard`` and adds
the tallies (e.g. with ``torch.distributed.all_reduce`` on ``Tally.tensors``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from ..stats import iou
from .labels import _LabelBatch, _LabelSpace, _unpack_labels
from .result import DissectionResult
from .sparse import _active_pixels, _Geometry, _nonzero


class _Tally:
    """Intersections, category-restricted activation totals and unit areas of one layer."""

    def __init__(
        self,
        units: int,
        space: _LabelSpace,
        seg_shape: tuple[int, int],
        dev: torch.device,
        chunk_pixels: int,
    ) -> None:
        L, C = space.num_labels, len(space.categories)
        self.units, self.space, self.seg_shape, self.dev = units, space, seg_shape, dev
        self.inter = torch.zeros(units, L, dtype=torch.long, device=dev)
        self.act_cat = torch.zeros(units, C, dtype=torch.long, device=dev)
        self.unit_px = torch.zeros(units, dtype=torch.long, device=dev)
        self.chunk_pixels = chunk_pixels
        self.geom: _Geometry | None = None

    def update(
        self, acts: torch.Tensor, thr: torch.Tensor, packed: torch.Tensor, sc1h: torch.Tensor
    ) -> None:
        """acts (B, U, h, w); thr (U,); packed pixel labels (B, G, sh * sw) (see ``_pack_labels``);
        sc1h (B, L) image-level label counts."""
        L, U = self.space.num_labels, self.units
        if self.geom is None:
            self.geom = _Geometry(acts.shape[2], acts.shape[3], *self.seg_shape, self.dev)
        b, u, pos = _active_pixels(acts, thr, self.geom, self.chunk_pixels)
        if len(b) == 0:
            return
        key = b * U + u
        count = torch.bincount(key, minlength=acts.shape[0] * U)  # (image, unit) pairs that fire
        (pairs,) = _nonzero(count)
        n = len(pairs)
        lut = torch.empty_like(count)
        lut[pairs] = torch.arange(n, device=self.dev)
        pid, area, pb, pu = lut.index_select(0, key), count[pairs], pairs // U, pairs % U
        self.unit_px.index_add_(0, pu, area)
        hist = area[:, None] * sc1h[pb]  # image-level labels cover all
        if packed.shape[1]:
            S = self.seg_shape[0] * self.seg_shape[1]
            G = packed.shape[1]
            base = b * (G * S) + pos  # packed is (B, G, sh * sw)
            codes = packed.view(-1).index_select(
                0, (base[:, None] + torch.arange(G, device=self.dev) * S).view(-1)
            )
            lab = _unpack_labels(codes, L).view(len(key), -1)  # K (or a few more) per pixel
            counts = torch.bincount((pid[:, None] * L + lab).view(-1), minlength=n * L).view(n, L)
            counts[:, 0] = 0  # unlabeled pixels
            hist += counts
        self.inter.index_add_(0, pu, hist)
        present = ((hist > 0).float() @ self.space.labelcat) > 0  # categories touched, (n, C)
        self.act_cat.index_add_(0, pu, area[:, None] * present.long())

    def merge(self, other: _Tally) -> _Tally:
        """Add the counts of another shard (same layer, label space and units)."""
        if other.units != self.units or other.space.num_labels != self.space.num_labels:
            raise ValueError("can only merge tallies of the same layer and label space.")
        for k in ("inter", "act_cat", "unit_px"):
            getattr(self, k).add_(getattr(other, k).to(self.dev))
        return self

    def result(self, layer: str, label_px: torch.Tensor, meta: _Meta) -> DissectionResult:
        """The counts as a :class:`DissectionResult` (IoU = I / (A_cat + G - I))."""
        inter = self.inter.cpu().numpy()
        act_cat = self.act_cat.cpu().numpy()
        G = label_px.cpu().numpy()
        prim = self.space.primary
        act_lab = np.where(prim[None, :] >= 0, act_cat[:, np.clip(prim, 0, None)], 0)
        scores = iou(inter, act_lab, G[None, :])
        scores[:, 0] = 0.0
        table = self.space.table.copy()
        table["pixels"] = G
        return DissectionResult(
            layer=layer,
            thresholds=meta.thresholds[layer].cpu().numpy().astype(np.float32),
            iou=scores,
            labels=table,
            intersection=inter,
            activation=act_cat,
            unit_pixels=self.unit_px.cpu().numpy(),
            label_pixels=G,
            categories=list(self.space.categories),
            n_images=meta.n_images,
            quantile=meta.quantile,
            iou_threshold=meta.iou_threshold,
            threshold_method=meta.methods[layer],
            threshold_error=meta.errors.get(layer),
        )


@dataclass
class _Meta:
    """What a result reports besides the counts."""

    thresholds: dict[str, torch.Tensor]
    methods: dict[str, str]
    errors: dict[str, np.ndarray | None]
    n_images: int
    quantile: float
    iou_threshold: float


@dataclass
class Tally:
    """The tallies of every layer over a set of images, and the label pixel counts G."""

    layers: dict[str, _Tally] = field(default_factory=dict)
    label_pixels: torch.Tensor | None = None
    n_images: int = 0

    def tensors(self) -> list[torch.Tensor]:
        """Every count tensor, in a fixed order (for an all-reduce across processes)."""
        out = [t for nm in sorted(self.layers) for t in _counts(self.layers[nm])]
        return out + ([self.label_pixels] if self.label_pixels is not None else [])

    def results(self, meta: _Meta) -> dict[str, DissectionResult]:
        """One :class:`DissectionResult` per layer."""
        return {nm: t.result(nm, self.label_pixels, meta) for nm, t in self.layers.items()}


def _counts(t: _Tally) -> list[torch.Tensor]:
    return [t.inter, t.act_cat, t.unit_px]


def tally_shard(
    batches: Iterable[tuple[Mapping[str, torch.Tensor], _LabelBatch]],
    thresholds: Mapping[str, torch.Tensor],
    space: _LabelSpace,
    seg_shape: tuple[int, int],
    chunk_pixels: int,
) -> Tally:
    """Tally one shard of the dataset.

    Args:
        batches: per batch, ``({layer: feature maps (B, U, h, w)}, labels)`` with the labels of the
            same images (``interpkit.dissection.labels._label_batch``).
        thresholds: per layer, the unit thresholds (U,).
        space: the label space (which labels are scored).
        seg_shape: the segmentation resolution (sh, sw).
        chunk_pixels: bound on the upsampled pixels evaluated at once.

    Returns:
        The shard's ``Tally`` (combine shards with ``combine_tallies``).
    """
    dev = space.lut.device
    out = Tally(label_pixels=torch.zeros(space.num_labels, dtype=torch.long, device=dev))
    for feats, lab in batches:
        out.label_pixels += lab.label_pixels
        out.n_images += lab.n
        for nm, a in feats.items():
            if nm not in out.layers:
                out.layers[nm] = _Tally(a.shape[1], space, seg_shape, dev, chunk_pixels)
            out.layers[nm].update(a, thresholds[nm].to(dev), lab.packed, lab.scalar_counts)
    return out


def combine_tallies(tallies: Iterable[Tally]) -> Tally:
    """Sum the tallies of disjoint shards (exact: the counts are integers).

    Args:
        tallies: tallies of the same layers and label space, e.g. one per process.

    Returns:
        A new ``Tally`` equal to tallying all shards' images at once.
    """
    out = Tally()
    for t in tallies:
        out.n_images += t.n_images
        if t.label_pixels is not None:
            lp = t.label_pixels.clone()
            out.label_pixels = lp if out.label_pixels is None else out.label_pixels + lp
        for nm, lt in t.layers.items():
            if nm in out.layers:
                out.layers[nm].merge(lt)
            else:
                fresh = _Tally(lt.units, lt.space, lt.seg_shape, lt.dev, lt.chunk_pixels)
                out.layers[nm] = fresh.merge(lt)
    return out
